"""Turning pydantic's error list into `<file>: <path>: <what is wrong>` lines.

Secrets never appear: the value of an error under a secret key (``password``, ``token``,
``credentials``, every key typed as a secret, and every key named like one) is never shown.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ocync_core.config._types import ERROR_TYPE, show_value
from ocync_core.errors import ConfigError

__all__ = [
    "ConfigProblems",
    "Problem",
    "format_path",
    "looks_secret",
    "secret_keys",
    "translate",
]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ALWAYS_SECRET = frozenset({"password", "token", "credentials"})
# A plugin may type a secret as plain `str`: its name still gives it away.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key")


def looks_secret(key: str) -> bool:
    """Whether a key's name says its value is a secret (``client_secret``, ``api_token``)."""
    name = key.lower()
    return name in _ALWAYS_SECRET or any(word in name for word in _SECRET_WORDS)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, at a path like ``mappings[0].tags.latest``."""

    path: str
    message: str

    def render(self, source: str) -> str:
        if not self.path:
            return f"{source}: {self.message}"
        return f"{source}: {self.path}: {self.message}"


class ConfigProblems(ConfigError):
    """A ConfigError listing every problem found, one `<file>: <path>: <what>` per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


def format_path(loc: Iterable[Any]) -> str:
    """``("mappings", 0, "tags", "latest")`` → ``mappings[0].tags.latest``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("[") and part.endswith("]"):
            out += part  # a pre-formatted index from a validator's `at`
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{show_value(part, 40)}]"
    return out


def secret_keys(model: type[BaseModel]) -> frozenset[str]:
    """The keys whose values are secrets, anywhere under `model` (plus the usual names)."""
    keys: set[str] = set(_ALWAYS_SECRET)
    seen: set[type] = set()

    def visit(m: type[BaseModel]) -> None:
        if m in seen:
            return
        seen.add(m)
        for name, field in m.model_fields.items():
            key = field.alias or name
            if "Secret" in repr(field.annotation) or looks_secret(key):
                keys.add(key)
            for sub in _models_in(field.annotation):
                visit(sub)

    visit(model)
    return frozenset(keys)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _model_at(root: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the value at `loc`, or None."""
    annotation: Any = root
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    models = _models_in(annotation)
    return models[0] if len(models) == 1 else None


def _step(annotation: Any, part: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found = _step(arg, part)
                if found is not None:
                    return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (field.alias, name) and (field.alias is None or part == field.alias):
                return field.annotation
        return None
    if origin is list and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def translate(
    error: ValidationError,
    root: type[BaseModel],
    secrets: frozenset[str],
    templates: dict[tuple[Any, ...], str] | None = None,
) -> list[Problem]:
    """One `Problem` per pydantic error, with our paths and wording."""
    problems: list[Problem] = []
    for item in error.errors(include_url=False, include_context=True, include_input=True):
        loc = tuple(item["loc"])
        kind = item["type"]
        ctx = item.get("ctx") or {}
        value = item.get("input")
        if kind == ERROR_TYPE and ctx.get("at"):
            loc = (*loc, ctx["at"])
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        secret = any(part in secrets for part in loc if isinstance(part, str))
        got = "" if secret else f", got {show_value(value)}"
        if not secret and templates and loc in templates:
            got += f" (from {templates[loc]!r})"
        message = _message(kind, ctx, item.get("msg", ""), got, root, loc)
        problems.append(Problem(format_path(loc), message))
    return problems


def _message(
    kind: str, ctx: dict[str, Any], msg: str, got: str, root: type[BaseModel], loc: tuple
) -> str:
    if kind == ERROR_TYPE:
        return str(ctx.get("message", msg))
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        if parent is None:
            return "unknown key"
        keys = _keys_of(parent)
        text = f"unknown key (expected one of: {', '.join(keys)})"
        key = loc[-1] if loc else None
        close = difflib.get_close_matches(key, keys, n=1) if isinstance(key, str) else []
        return f"{text}; did you mean {close[0]!r}?" if close else text
    if kind == "missing":
        return "required key is missing"
    if kind in ("value_error", "assertion_error"):
        error = ctx.get("error")
        return str(error) if error is not None else msg.removeprefix("Value error, ")
    simple = {
        "int_type": "expected an integer",
        "int_parsing": "expected an integer",
        "int_from_float": "expected an integer",
        "int_parsing_size": "expected a smaller integer",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "string_type": "expected a string",
        "string_unicode": "expected a string",
        "float_type": "expected a number",
        "float_parsing": "expected a number",
        "list_type": "expected a list",
        "dict_type": "expected a mapping (key: value)",
        "model_type": "expected a mapping (key: value)",
        "model_attributes_type": "expected a mapping (key: value)",
        "none_required": "expected nothing (null)",
        "path_type": "expected a path",
        "invalid_key": "a key must be text",
    }
    if kind in simple:
        return simple[kind] + got
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}{got}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}{got}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}{got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}{got}"
    if kind == "finite_number":
        return "expected a finite number" + got
    return f"{msg[:1].lower()}{msg[1:]}{got}"
