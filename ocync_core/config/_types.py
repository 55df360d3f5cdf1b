"""Reusable field types of the configuration models: durations, paths, lists, names."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ocync_core.config._yaml import source_text

__all__ = [
    "Duration",
    "FilePath",
    "OptionalPath",
    "StringList",
    "Text",
    "format_duration",
    "parse_duration",
    "problem",
    "resolve_path",
]

ERROR_TYPE = "ocync"

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX_SECONDS = 100 * 365 * 86400.0
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def problem(message: str, at: str | None = None) -> PydanticCustomError:
    """A validation error with our own message; `at` names a sub-key of the validated value."""
    ctx: dict[str, Any] = {"message": message}
    if at is not None:
        ctx["at"] = at
    return PydanticCustomError(ERROR_TYPE, "{message}", ctx)


def show_value(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: quoted text, YAML's own spelling of numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (nothing)"
    text = source_text(value)
    if text is not None:
        return text
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def parse_duration(value: Any) -> float:
    """Seconds from ``"24h"``, ``"1h30m"``, ``"90s"``, ``"500ms"``, ``"2d"`` or a number."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < _MAX_SECONDS:  # also refuses NaN
            raise problem(f"expected a duration like 24h, 30m or 90s, got {show_value(value)}")
        return float(value)
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = sum(
            float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value.strip())
        )
        if not seconds < _MAX_SECONDS:
            raise problem(f"duration {value[:60]!r} is too long (at most 100 years)")
        return seconds
    raise problem(
        "expected a duration like 24h, 30m, 90s or 1h30m (units: ms, s, m, h, d), "
        f"got {show_value(value)}"
    )


def format_duration(seconds: float) -> str:
    """A form `parse_duration` reads back: ``24h``, ``1h30m``, ``25s``, ``0s``."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "a duration: 24h, 30m, 90s, 1h30m, 500ms, 2d, or seconds",
        }
    ),
]


def resolve_path(value: str, info: ValidationInfo | None) -> Path:
    """Expand ``~``; a relative path is relative to the config file's directory."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") if info is not None else None
        path = Path(base or Path.cwd()) / path
    return Path(os.path.normpath(path))


def _path(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        if not value.strip():
            raise problem("expected a path, got an empty string")
        if "\x00" in value:
            raise problem("a path cannot contain a NUL character")
        return resolve_path(value, info)
    return value  # pydantic reports the wrong type


def _existing_file(value: Path) -> Path:
    if not value.is_file():
        what = "is a directory, not a file" if value.is_dir() else "does not exist"
        raise problem(f"file {str(value)!r} {what}")
    return value


_PATH_SCHEMA = WithJsonSchema({"type": "string", "description": "a file system path"})
OptionalPath = Annotated[Path, BeforeValidator(_path), PlainSerializer(str), _PATH_SCHEMA]
FilePath = Annotated[
    Path,
    BeforeValidator(_path),
    AfterValidator(_existing_file),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "description": "an existing file"}),
]


def _text(value: Any) -> Any:
    """Numbers where text is expected: a YAML ``1.10`` is the text ``"1.10"``; an int its digits."""
    text = source_text(value)
    if text is not None:
        return text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


def _string_list(value: Any) -> Any:
    if isinstance(value, str) or source_text(value) is not None:
        return [value]
    return value


def string_list_schema(item: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item}]})


StringList = Annotated[
    list[Text], BeforeValidator(_string_list), string_list_schema({"type": "string"})
]
