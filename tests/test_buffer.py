"""The unread-message buffer: order kept across memory and the spill file, memory bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctlwire.protocol.buffer import LINE_OVERHEAD, READ_BACK, MessageBuffer, SpillError


def drain(buffer: MessageBuffer, step: int = 64) -> list[bytes]:
    out: list[bytes] = []
    while buffer:
        out += buffer.take(step)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.lists(st.integers(1, 3000), min_size=1, max_size=40)),
            st.tuples(st.just("take"), st.integers(1, 200)),
        ),
        max_size=60,
    )
)
def test_any_interleaving_keeps_order_and_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, object]]
) -> None:
    buffer = MessageBuffer(budget=8 * 1024, spill_dir=tmp_path_factory.mktemp("spill"))
    sent: list[bytes] = []
    got: list[bytes] = []
    for action, arg in script:
        if action == "put":
            assert isinstance(arg, list)
            lines = [b"%d:" % (len(sent) + i) + b"x" * size for i, size in enumerate(arg)]
            sent += lines
            buffer.extend(lines)
        else:
            assert isinstance(arg, int)
            taken = buffer.take(arg)
            assert len(taken) <= arg
            assert taken or not buffer  # something queued always comes back
            got += taken
    got += drain(buffer)
    assert got == sent
    assert len(buffer) == 0 and buffer.spilled_bytes == 0
    buffer.close()


def test_memory_stays_within_the_budget_and_the_rest_goes_to_disk(tmp_path: Path) -> None:
    budget = 256 * 1024
    buffer = MessageBuffer(budget, tmp_path)
    line = b'{"type":"assistant","pad":"' + b"x" * 270 + b'"}'
    batch = [line] * 1000
    for _ in range(100):  # ~30 MB, nobody taking
        buffer.extend(batch)
    one_batch = len(batch) * (len(line) + LINE_OVERHEAD)
    assert buffer.memory_bytes <= budget + one_batch
    assert buffer.spilled_bytes > 25 * 2**20
    assert len(buffer) == 100_000
    assert drain(buffer, 500) == batch * 100
    assert buffer.peak_memory_bytes <= budget + one_batch + READ_BACK * 2


def test_a_line_longer_than_a_read_back_comes_back_whole(tmp_path: Path) -> None:
    buffer = MessageBuffer(1024, tmp_path)
    big = b"y" * (READ_BACK * 3 + 7)
    buffer.extend([b"first"])
    buffer.extend([b"second", big, b"third"])
    assert buffer.spilled_bytes > READ_BACK * 3
    assert drain(buffer, 1) == [b"first", b"second", big, b"third"]


def test_a_spill_that_cannot_be_written_is_a_typed_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    buffer = MessageBuffer(16, missing)
    buffer.extend([b"fits, being the first"])
    with pytest.raises(SpillError, match="cannot keep unread messages"):
        buffer.extend([b"x" * 100])


def test_the_spill_file_is_unnamed_and_gone_after_close(tmp_path: Path) -> None:
    buffer = MessageBuffer(16, tmp_path)
    buffer.extend([b"a" * 100])
    buffer.extend([b"b" * 100])
    assert buffer.spilled_bytes > 0
    assert os.listdir(tmp_path) == []  # never visible by name
    buffer.close()
    assert len(buffer) == 0


def test_bad_budget() -> None:
    with pytest.raises(ValueError, match="budget must be positive"):
        MessageBuffer(0)
