"""YAML reading for configuration files: YAML 1.2 core scalars, duplicate keys refused.

PyYAML follows YAML 1.1, where ``no`` is false, ``2024-01-01`` is a date and ``1.10`` is the
float 1.1. In a mirroring config those are tag names, so this loader resolves plain scalars by
the YAML 1.2 core schema (only ``true``/``false`` are booleans, no dates, no sexagesimals) and
remembers the source text of every number, so that a tag written ``1.10`` stays ``"1.10"``
where the configuration expects a string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ocync_core.errors import ConfigError

__all__ = ["YamlFloat", "YamlInt", "load_yaml", "source_text"]


class YamlInt(int):
    """An integer read from YAML, with the text it was written as."""

    yaml_text: str

    def __new__(cls, value: int, text: str) -> YamlInt:
        obj = super().__new__(cls, value)
        obj.yaml_text = text
        return obj


class YamlFloat(float):
    """A float read from YAML, with the text it was written as."""

    yaml_text: str

    def __new__(cls, value: float, text: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.yaml_text = text
        return obj


def source_text(value: Any) -> str | None:
    """The text a YAML number was written as (``1.10``), or None for anything else."""
    return getattr(value, "yaml_text", None) if isinstance(value, int | float) else None


_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 core-schema resolution and duplicate-key detection."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key (a list or mapping used as a key)",
                    key_node.start_mark,
                ) from None
            if key in seen:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined on line {first.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        digits = digits.lstrip("+-")
        if digits.startswith("0o"):
            value = int(digits[2:], 8)
        elif digits.startswith("0x"):
            value = int(digits[2:], 16)
        else:
            value = int(digits)
        return YamlInt(sign * value, text)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        lowered = text.lower()
        if lowered in (".inf", "+.inf"):
            value = float("inf")
        elif lowered == "-.inf":
            value = float("-inf")
        elif lowered == ".nan":
            value = float("nan")
        else:
            value = float(text)
        return YamlFloat(value, text)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus merge keys.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; a syntax error becomes ConfigError ``file:line:column: what``.

    The message never quotes the offending line (it might hold a password).
    """
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context != exc.problem:
            what = f"{exc.problem} ({exc.context})"
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "${" in lines[mark.line] and "flow" in what:
            what += "; inside [ ] or { }, quote a value that holds ${...}"
        raise ConfigError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {type(exc).__name__}") from None
