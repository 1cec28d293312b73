"""What the official SDK would start for a set of options: argv, folder and environment.

The argv comes from the SDK's own builder (a `SubprocessCLITransport` that is never
connected), so it follows the installed SDK version; the environment is rebuilt here by
the same rules. Whatever the builder needs is checked first: an SDK that renamed it gets
a `CLIConnectionError` that says so, never a half-built command.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import claude_agent_sdk
from claude_agent_sdk import ClaudeAgentOptions, CLIConnectionError

try:
    from claude_agent_sdk import types as sdk_types
    from claude_agent_sdk._internal import _client_app
    from claude_agent_sdk._internal.transport import subprocess_cli
except ImportError as exc:  # pragma: no cover - only an SDK that moved its transport
    raise ImportError(
        f"ctlwire.sdk cannot use claude-agent-sdk {claude_agent_sdk.__version__}: {exc}"
    ) from exc

# The SDK's own names for what the child gets; read from the SDK when it has them.
ENTRYPOINT = ("CLAUDE_CODE_ENTRYPOINT", "sdk-py")
VERSION_VARIABLE = "CLAUDE_AGENT_SDK_VERSION"
NESTED_MARKER = "CLAUDECODE"
CHECKPOINTING = ("CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING", "true")
# The private parts of the SDK this module leans on, by the name each has in the SDK.
BUILDER_PARTS = ("_find_cli", "_build_command", "_derive_client_app", "_reject_windows_batch_cli")
MODULE_PARTS = {
    subprocess_cli: ("_SDK_READS_SESSION_STATE_ENV",),
    _client_app: ("EXPLICIT_CLIENT_APP_ENV", "DERIVED_CLIENT_APP_ENV"),
    sdk_types: ("_configure_can_use_tool",),
}

Prompt = str | AsyncIterable[dict[str, Any]]


@dataclass(frozen=True)
class Launch:
    """How to start the CLI: the whole argv, its working folder and whole environment."""

    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    user: str | None


def check_sdk() -> None:
    """Raise `CLIConnectionError` naming what is missing if this SDK lacks a part we use."""
    missing = [
        f"SubprocessCLITransport.{name}"
        for name in BUILDER_PARTS
        if not callable(getattr(subprocess_cli.SubprocessCLITransport, name, None))
    ]
    for module, names in MODULE_PARTS.items():
        short = module.__name__.rsplit(".", 1)[-1]
        missing += [f"{short}.{name}" for name in names if not hasattr(module, name)]
    if missing:
        raise CLIConnectionError(
            f"ctlwire.sdk cannot build the CLI command with claude-agent-sdk "
            f"{claude_agent_sdk.__version__}: it no longer has {', '.join(missing)}; "
            "use the SDK's own transport, or a ctlwire release made for this SDK"
        )


async def build_launch(prompt: Prompt, options: ClaudeAgentOptions) -> Launch:
    """The CLI the SDK would run for ``options``: found (cli_path or the bundled CLI or
    PATH), checked, and with the SDK's own flags."""
    check_sdk()
    # query() and ClaudeSDKClient apply this only to the transport they make themselves:
    # with a can_use_tool callback, permission prompts come over stdio.
    options = sdk_types._configure_can_use_tool(options)
    builder = subprocess_cli.SubprocessCLITransport(prompt, options)
    if builder._cli_path is None:
        builder._cli_path = await anyio.to_thread.run_sync(builder._find_cli)
    builder._reject_windows_batch_cli(builder._cli_path)
    argv = builder._build_command()
    cwd = str(options.cwd) if options.cwd else None
    env = child_environment(options, cwd)
    explicit = _client_app.EXPLICIT_CLIENT_APP_ENV
    if explicit not in env:
        label = await builder._derive_client_app()
        if label is not None:
            env[_client_app.DERIVED_CLIENT_APP_ENV] = label
    return Launch(argv, cwd, env, options.user)


def child_environment(options: ClaudeAgentOptions, cwd: str | None) -> dict[str, str]:
    """The CLI's whole environment as the SDK composes it (less a derived app label)."""
    env = {name: value for name, value in os.environ.items() if name != NESTED_MARKER}
    env[ENTRYPOINT[0]] = ENTRYPOINT[1]  # the caller's options.env may override it
    env.update(options.env)
    env[VERSION_VARIABLE] = claude_agent_sdk.__version__
    # A label inherited from an outer SDK session names that session's app, not ours.
    env.pop(_client_app.DERIVED_CLIENT_APP_ENV, None)
    if options.client_app is not None:
        env[_client_app.EXPLICIT_CLIENT_APP_ENV] = options.client_app
    session_state = subprocess_cli._SDK_READS_SESSION_STATE_ENV
    if all(name.upper() != session_state for name in env):
        env[session_state] = "1"  # the SDK's Query relies on these frames to end runs
    if options.enable_file_checkpointing:
        env[CHECKPOINTING[0]] = CHECKPOINTING[1]
    if cwd:
        env["PWD"] = cwd
    return env
