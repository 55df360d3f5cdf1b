"""The `ocync` command's entry point: keeps start-up lean, then runs the CLI."""

from __future__ import annotations

import sys
import types

__all__ = ["main"]


def main() -> None:
    """Console-script and ``python -m ocync_core`` entry point."""
    _without_httpx_command_line()
    from ocync_core.cli import main as run

    run()


def _without_httpx_command_line() -> None:
    # `import httpx` also imports httpx's own command-line tool (click, rich and their
    # dependencies) whenever click and rich are installed, as they are for ocync: about 70 ms
    # of every ocync start, for a tool ocync never runs. In the ocync process only, an empty
    # stand-in takes its place.
    if "httpx" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def httpx_main() -> None:
        raise SystemExit("httpx's command line is not loaded inside the ocync command")

    stand_in.main = httpx_main  # type: ignore[attr-defined]
    sys.modules.setdefault("httpx._main", stand_in)
