"""``${VAR}`` interpolation over the string values of a parsed configuration tree.

Interpolation runs after YAML parsing, on string values only (never on keys), so a variable
can never inject YAML structure: ``password: ${PW}`` stays one string whatever ``$PW`` holds.

- ``${VAR}``: the variable's value; unset is an error naming the path and the variable.
- ``${VAR:-default}``: the default when VAR is unset or empty.
- ``${VAR:?message}``: an error carrying `message` when VAR is unset or empty.
- ``$${``: a literal ``${`` (``$${VAR}`` is the text ``${VAR}``). A ``$`` elsewhere is literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Interpolated", "interpolate_text", "interpolate_tree"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\$\$\{|\$\{")


class InterpolationError(ValueError):
    """One interpolation problem in one string."""


@dataclass(frozen=True)
class Interpolated:
    """The tree with variables substituted, the problems found, and which paths changed."""

    tree: Any
    problems: list[tuple[tuple[Any, ...], str]]
    templates: dict[tuple[Any, ...], str]


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Substitute the variables in one string; InterpolationError says what is wrong."""
    if "$" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        found = _TOKEN.search(text, pos)
        if found is None:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos : found.start()])
        if found.group() == "$${":
            out.append("${")
            pos = found.end()
            continue
        close = text.find("}", found.end())
        if close < 0:
            raise InterpolationError(
                f"unclosed '${{' at character {found.start() + 1} (write '$${{' for a literal)"
            )
        out.append(_expand(text[found.end() : close], env))
        pos = close + 1


def _expand(body: str, env: Mapping[str, str]) -> str:
    name_match = _NAME.match(body)
    name = name_match.group() if name_match else ""
    rest = body[len(name) :]
    if not name or not (rest == "" or rest.startswith((":-", ":?"))):
        shown = body if len(body) <= 60 else body[:60] + "..."
        raise InterpolationError(
            f"invalid variable reference '${{{shown}}}' "
            "(expected ${NAME}, ${NAME:-default} or ${NAME:?message}; '$${' for a literal)"
        )
    value = env.get(name)
    if rest == "":
        if value is None:
            raise InterpolationError(
                f"environment variable {name} is not set "
                f"(set it, or give a default: ${{{name}:-default}})"
            )
        return value
    operator, argument = rest[:2], rest[2:]
    if value:
        return value
    if operator == ":-":
        return argument
    raise InterpolationError(argument or f"environment variable {name} is not set or empty")


def interpolate_tree(tree: Any, env: Mapping[str, str]) -> Interpolated:
    """Interpolate every string value in `tree` (dicts, lists, scalars); collect all problems."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    templates: dict[tuple[Any, ...], str] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(node, str):
            try:
                result = interpolate_text(node, env)
            except InterpolationError as exc:
                problems.append((path, str(exc)))
                return node
            if result != node:
                templates[path] = node
            return result
        if isinstance(node, dict):
            return {key: walk(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [walk(value, (*path, i)) for i, value in enumerate(node)]
        return node

    return Interpolated(walk(tree, ()), problems, templates)
