"""The `ocync` command's entry point: keeps start-up and exit lean, then runs the CLI."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import types

__all__ = ["main"]


def main() -> None:
    """Console-script and ``python -m ocync_core`` entry point."""
    _without_httpx_command_line()
    from ocync_core.cli import main as run

    try:
        run()
    except SystemExit as exc:
        _exit_at_once(exc.code)
    _exit_at_once(0)


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


def _exit_at_once(code: object) -> None:
    """Exit as `sys.exit(code)` would, without tearing the interpreter down object by object.

    The command's work is done and its files are closed; what a normal exit adds is freeing
    every module of trio, httpx, pydantic and the plugins, about 120 ms: a tenth of a sync with
    nothing to do. Exit handlers still run and both streams are flushed first.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)  # sys.exit("message"): the message, then status 1
        status = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is not None:
        run_exit_handlers()  # logging's flush, and any a plugin registered
    else:  # pragma: no cover - not CPython: let the interpreter exit normally
        sys.exit(status)
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 120  # what Python answers when it cannot flush stdout at exit
    os._exit(status)
