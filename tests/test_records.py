"""The record builders make messages the official Python SDK's parser accepts."""

from __future__ import annotations

from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ResultMessage, UserMessage
from claude_agent_sdk._internal.message_parser import parse_message

from ctlwire.fixtures import records as r


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (r.user("hi"), UserMessage),
        (r.assistant("hello"), AssistantMessage),
        (r.result(), ResultMessage),
        (r.result("error_during_execution", is_error=True, num_turns=3), ResultMessage),
    ],
)
def test_the_reference_parser_accepts_each_builder(frame: dict[str, Any], kind: type) -> None:
    assert isinstance(parse_message(frame), kind)
