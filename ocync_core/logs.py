"""Log output: plain text for people, one JSON object per line for log collectors.

Levels: INFO by default, ``-v`` DEBUG, ``-q`` WARNING, ``-qq`` ERROR. httpx narrates every
request at INFO: only ``-vv`` shows those lines; httpcore's connection chatter never shows.

A JSON line holds ``time`` (UTC, RFC 3339), ``level``, ``logger`` and ``message``, every field
given through ``extra=`` at the top level, and ``exception`` with the traceback when there is
one. A field named like one of these keys is written as ``field_<name>``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging", "json_logging", "level_for"]

LOG_FORMATS = ("text", "json")
_TEXT_FORMAT = "%(levelname)s %(message)s"
_REQUEST_LOGGER = "httpx"
_CONNECTION_LOGGERS = ("httpcore", "hpack")
_OWN_KEYS = ("time", "level", "logger", "message", "exception", "stack")
# Attributes every LogRecord has: whatever else a record carries came through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_"):
                continue
            entry[f"field_{key}" if key in _OWN_KEYS else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a field holding a Path or an enum must not cost the log line.
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is at each record: a runner that swaps stderr for a while
    (click's CliRunner, pytest) must not leave the handler writing to a closed stream."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # `handle` holds the handler's lock around `emit`
        super().emit(record)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def level_for(verbose: int, quiet: int) -> int:
    """INFO moved one step per ``-v`` (towards DEBUG) or ``-q`` (towards ERROR)."""
    level = logging.INFO + 10 * quiet - 10 * verbose
    return min(max(level, logging.DEBUG), logging.ERROR)


def configure_logging(
    verbose: int = 0, quiet: int = 0, log_format: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to `stream` (stderr) in `log_format`; returns the handler.

    Calling it again replaces the handler it installed before, and only that one: handlers
    others put on the root logger (a test runner's) stay.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "ocync_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.ocync_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level_for(verbose, quiet))
    logging.getLogger(_REQUEST_LOGGER).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    for name in _CONNECTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def json_logging() -> bool:
    """Whether `configure_logging` last chose JSON lines (so stderr must carry nothing else)."""
    return any(
        getattr(handler, "ocync_handler", False) and isinstance(handler.formatter, JsonFormatter)
        for handler in logging.getLogger().handlers
    )
