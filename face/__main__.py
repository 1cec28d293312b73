"""``python -m ctlwire``: the ``ctlwire`` command (also its console-script entry point)."""

from __future__ import annotations

from typing import NoReturn


def main() -> NoReturn:
    """Run the command; imports the tooling only when called."""
    from ctlwire.fixtures.command import run

    run()


if __name__ == "__main__":
    main()
