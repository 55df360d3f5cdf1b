"""Tag filters and the platform filter: pure functions over names and descriptors, no I/O.

Tag selection (`select_tags`), in order:

1. Candidates. A tag is a candidate when it matches any `glob` (fnmatchcase) and satisfies the
   `semver` range; a tag that does not parse as a version (`latest`, `sha-abc`) is dropped when
   `semver` is set. Without `glob` and `semver` every tag is a candidate, except when the rules
   are only `include` literals (nothing in `exclude`, no `latest`): then there are no candidates
   and the source tag list is not needed at all (`TagRules.literal_only`).
2. `exclude` globs remove candidates.
3. Order. `sort: semver` orders by version precedence (semver 2.0.0: a pre-release or suffix
   such as `1.2.3-rc.1` or `1.2.3-alpine` sorts before `1.2.3`), ties broken by the tag text
   (`v1.2` vs `1.2.0`); tags that are not versions are **dropped**, because `latest: N` takes the
   end of the list and `latest` or `sha-abc` must never pass for the newest version (name them in
   `include` to keep them). `sort: alpha` orders by code point. Without `sort` the order is
   alphabetical too, so the output never depends on the order a registry listed its tags in.
4. `latest: N` keeps the last N after sorting (`latest` needs a `sort`).
5. `include` literals are always kept, even when excluded or outside the other rules, but only
   if the source lists them: a literal that the source does not have is not invented; the engine
   reports it (`missing_includes`). When `literal_only`, the engine asks for them directly.
   They come after the sorted selection, in the order given, without duplicates.

`min_tags` is not applied by `select_tags`: the engine calls `check_min_tags` with the name of
the mapping, so the error says which one.

Semver ranges (`parse_semver_range`) follow npm's grammar, strictly: comparators `>=1.2 <2`
(a comma may separate them too: `>=1.0.0, <2.0.0`), `=1.2.3`, caret `^1.4`, tilde `~3.1`,
x-ranges `1.x` / `1.2.*` / `1` / `*`, hyphen ranges `1.2 - 2.3`, and alternatives with `||`.
Anything else is a `FilterError` naming the range (no silent dropping of what was not
understood). A range is matched against a tag's version *core* (major.minor.patch): container
tags use the suffix for variants (`-alpine`, `-r1`, `-bookworm`) far more than for
pre-releases, so `>=1.2` keeps `1.4.0-alpine`; choose suffixes with `glob`/`exclude`. For the
same reason a range may not name a pre-release itself.

Platforms (`select_platforms`, `filtered_index`): a child is kept when its platform matches any
wanted one (os and architecture equal; the variant compared only when both name one). Buildx
attestation manifests (annotation `vnd.docker.reference.type`) are kept exactly when the child
they describe (`vnd.docker.reference.digest`) is kept, so asking for every platform an index
has keeps its bytes and digest. Any other child without a platform is dropped: nothing says it
belongs to a wanted platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from semver import Version

from ocync_core.errors import BadInput
from ocync_core.manifest import Descriptor, ImageIndex, Platform, build_index

__all__ = [
    "SORT_ORDERS",
    "FilterError",
    "SemverRange",
    "TagRules",
    "check_min_tags",
    "filtered_index",
    "immutable_glob_matches",
    "missing_includes",
    "parse_semver_range",
    "parse_tag_version",
    "select_platforms",
    "select_tags",
    "source_platforms",
]

SORT_ORDERS = ("semver", "alpha")
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"

# distribution/reference: a tag is [\w][\w.-]{0,127}
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IDENTS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_TAG_VERSION = re.compile(
    rf"[vV]?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+)(?:\.(?P<patch>[0-9]+))?)?"
    rf"(?:-(?P<pre>{_IDENTS}))?(?:\+(?P<build>{_IDENTS}))?"
)
_PART = r"(?:[0-9]+|[xX*])"
_PARTIAL = re.compile(rf"[vV]?(?P<major>{_PART})(?:\.(?P<minor>{_PART})(?:\.(?P<patch>{_PART}))?)?")
_OPERATOR = re.compile(r"\^|~|>=|<=|>|<|=")
_HYPHEN = re.compile(r"\s+-\s+")


class FilterError(BadInput):
    """A tag or platform filter is invalid, or selects what it must not (exit code 3)."""


# ---------------------------------------------------------------------------------------------
# versions


def parse_tag_version(tag: str) -> Version | None:
    """The version a tag names, or None when it names none.

    Tolerant of real tags: a `v` prefix, a missing minor or patch (`1.2` → 1.2.0, `20` →
    20.0.0), leading zeros (`22.04`), and a suffix after `-` kept as the pre-release
    (`1.2.3-alpine`, `1.2.3-r1`). `latest`, `sha-abc`, `1.2.3.4` and `1.2.3_x` are not versions.
    """
    match = _TAG_VERSION.fullmatch(tag)
    if match is None:
        return None
    return Version(
        int(match["major"]),
        int(match["minor"] or 0),
        int(match["patch"] or 0),
        match["pre"],
        match["build"],
    )


def _core(version: Version) -> tuple[int, int, int]:
    return (version.major, version.minor, version.patch)


_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "=": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Comparator:
    """One primitive bound on a version core: `>=1.2.0`."""

    op: str
    bound: tuple[int, int, int]

    def test(self, core: tuple[int, int, int]) -> bool:
        return _COMPARE[self.op](core, self.bound)

    def __str__(self) -> str:
        return f"{self.op}{'.'.join(map(str, self.bound))}"


@dataclass(frozen=True)
class SemverRange:
    """A parsed semver range: alternatives (`||`) of comparator sets that must all hold."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    def contains(self, version: Version) -> bool:
        """Whether the version's core (major.minor.patch) is in the range; suffixes don't count."""
        core = _core(version)
        return any(all(c.test(core) for c in group) for group in self.alternatives)

    def __contains__(self, version: object) -> bool:
        return isinstance(version, Version) and self.contains(version)

    def matches_tag(self, tag: str) -> bool:
        """Whether the tag parses as a version inside the range."""
        version = parse_tag_version(tag)
        return version is not None and self.contains(version)

    def __str__(self) -> str:
        """The normalised form: `>=1.4.0 <2.0.0`, `*` for any version, `<0.0.0` for none."""
        parts = [" ".join(map(str, group)) or "*" for group in self.alternatives]
        return " || ".join(parts) if parts else "<0.0.0"


@dataclass(frozen=True)
class _Partial:
    """`1`, `1.2`, `1.x`, `1.2.3`: the parts given (None where missing or a wildcard)."""

    major: int | None
    minor: int | None
    patch: int | None

    @property
    def any(self) -> bool:
        return self.major is None

    def floor(self) -> tuple[int, int, int]:
        return (self.major or 0, self.minor or 0, self.patch or 0)

    def ceiling(self) -> tuple[int, int, int] | None:
        """The first version above every version the partial stands for (None: it is exact)."""
        if self.major is None:
            raise AssertionError("no ceiling for *")
        if self.minor is None:
            return (self.major + 1, 0, 0)
        if self.patch is None:
            return (self.major, self.minor + 1, 0)
        return None


def _range_error(text: str, why: str) -> FilterError:
    return FilterError(f"semver range {text[:200]!r}: {why}")


def _partial(token: str, text: str) -> _Partial:
    match = _PARTIAL.fullmatch(token)
    if match is None:
        if re.fullmatch(rf"[vV]?[0-9]+\.[0-9]+\.[0-9]+-{_IDENTS}", token):
            raise _range_error(
                text,
                f"{token!r} names a pre-release; ranges compare the version core only, "
                "choose tag suffixes with glob/exclude",
            )
        raise _range_error(text, f"{token!r} is not a version (expected e.g. 1, 1.2, 1.2.3, 1.x)")
    parts: list[int | None] = []
    wildcard = False
    for raw in (match["major"], match["minor"], match["patch"]):
        if raw is None or raw in ("x", "X", "*"):
            wildcard = True
            parts.append(None)
        elif wildcard:
            raise _range_error(text, f"{token!r}: a number cannot follow a wildcard")
        else:
            parts.append(int(raw))
    return _Partial(*parts)


def _lt(bound: tuple[int, int, int]) -> tuple[Comparator, ...]:
    return (Comparator("<", bound),)


def _desugar(op: str, p: _Partial) -> tuple[Comparator, ...] | None:
    """Primitive comparators for one `op partial`; None when nothing can satisfy it."""
    if p.any:
        return None if op in ("<", ">") else ()
    floor, ceiling = p.floor(), p.ceiling()
    if op == "=":
        if ceiling is None:
            return (Comparator("=", floor),)
        return (Comparator(">=", floor), *_lt(ceiling))
    if op == ">=":
        return (Comparator(">=", floor),)
    if op == "<":
        return _lt(floor)
    if op == ">":
        return (Comparator(">", floor),) if ceiling is None else (Comparator(">=", ceiling),)
    if op == "<=":
        return (Comparator("<=", floor),) if ceiling is None else _lt(ceiling)
    if op == "~":
        major, minor = floor[0], floor[1]
        upper = (major + 1, 0, 0) if p.minor is None else (major, minor + 1, 0)
        return (Comparator(">=", floor), *_lt(upper))
    # caret: the first non-zero part given may not change
    major, minor, patch = floor
    if major > 0 or p.minor is None:
        upper = (major + 1, 0, 0)
    elif minor > 0 or p.patch is None:
        upper = (0, minor + 1, 0)
    else:
        upper = (0, 0, patch + 1)
    return (Comparator(">=", floor), *_lt(upper))


def _comparator_set(group: str, text: str) -> tuple[Comparator, ...] | None:
    group = group.strip()
    if not group:
        raise _range_error(text, "an empty alternative (nothing between '||')")
    halves = _HYPHEN.split(group)
    if len(halves) == 2:
        low, high = (_partial(h.strip(), text) for h in halves)
        lower = _desugar(">=", low)
        upper = _desugar("<=", high)
        return None if lower is None or upper is None else (*lower, *upper)
    if len(halves) > 2:
        raise _range_error(text, f"{group!r} has more than one hyphen range")
    tokens = [t for t in re.split(r"[\s,]+", group) if t]
    if not tokens:
        raise _range_error(text, "an empty comparator set")
    result: list[Comparator] = []
    satisfiable = True
    index = 0
    while index < len(tokens):
        token = tokens[index]
        op_match = _OPERATOR.match(token)
        op = op_match.group() if op_match else "="
        rest = token[op_match.end() :] if op_match else token
        if not rest:  # `>= 1.2`: the operator stands alone
            index += 1
            if index >= len(tokens):
                raise _range_error(text, f"operator {op!r} has no version after it")
            rest = tokens[index]
        if _OPERATOR.match(rest):
            raise _range_error(text, f"{token!r} has two operators")
        primitives = _desugar(op, _partial(rest, text))
        if primitives is None:
            satisfiable = False
        else:
            result.extend(primitives)
        index += 1
    return tuple(result) if satisfiable else None


def parse_semver_range(text: str) -> SemverRange:
    """Parse an npm-style range (`>=1.2 <2`, `^1.4`, `~3.1`, `1.x`, `>=1.0.0, <2.0.0`).

    Raises FilterError naming the text when any part of it is not understood.
    """
    if not isinstance(text, str) or not text.strip():
        raise _range_error(str(text), "empty (use '*' for any version)")
    alternatives = []
    for group in text.split("||"):
        comparators = _comparator_set(group, text)
        if comparators is not None:
            alternatives.append(comparators)
    return SemverRange(text, tuple(alternatives))


# ---------------------------------------------------------------------------------------------
# tag rules


def _globs(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise FilterError(f"tags.{name}: {item!r} must be a non-empty string")
    return items


@dataclass(frozen=True)
class TagRules:
    """Which tags of a repository to copy; see the module docstring for the semantics."""

    glob: tuple[str, ...] = ()
    semver: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sort: str | None = None
    latest: int | None = None
    min_tags: int | None = None
    semver_range: SemverRange | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("glob", "include", "exclude"):
            object.__setattr__(self, name, _globs(getattr(self, name), name))
        for tag in self.include:
            if not _TAG.fullmatch(tag):
                raise FilterError(
                    f"tags.include: {tag[:140]!r} is not a valid tag "
                    "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
                )
        if self.sort not in (None, *SORT_ORDERS):
            raise FilterError(f"tags.sort: {self.sort!r} must be one of: semver, alpha")
        for name in ("latest", "min_tags"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise FilterError(f"tags.{name}: {value!r} must be a non-negative integer")
        if self.latest is not None:
            if self.latest < 1:
                raise FilterError("tags.latest: must be at least 1")
            if self.sort is None:
                raise FilterError(
                    "tags.latest needs tags.sort (semver or alpha) to say which tags are latest"
                )
        if self.semver is not None:
            object.__setattr__(self, "semver_range", parse_semver_range(self.semver))

    @classmethod
    def from_model(cls, model: Any) -> TagRules:
        """Rules from the config's TagFilter (or anything with the same attributes)."""
        if model is None:
            return cls()
        sort = getattr(model, "sort", None)
        sort = getattr(sort, "value", sort)  # an Enum as well as a Literal
        return cls(
            glob=getattr(model, "glob", None) or (),
            semver=getattr(model, "semver", None),
            include=getattr(model, "include", None) or (),
            exclude=getattr(model, "exclude", None) or (),
            sort=sort,
            latest=getattr(model, "latest", None),
            min_tags=getattr(model, "min_tags", None),
        )

    @property
    def literal_only(self) -> bool:
        """Only `include` literals: the engine asks for them directly, without a tag list."""
        return (
            bool(self.include)
            and not self.glob
            and self.semver is None
            and not self.exclude
            and self.latest is None
        )

    def candidate(self, tag: str) -> bool:
        """Step 1 and 2: the tag matches glob and semver and no exclude."""
        if self.literal_only:
            return False
        if self.glob and not any(fnmatchcase(tag, g) for g in self.glob):
            return False
        if self.semver_range is not None and not self.semver_range.matches_tag(tag):
            return False
        return not any(fnmatchcase(tag, g) for g in self.exclude)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def select_tags(tags: Iterable[str], rules: TagRules) -> list[str]:
    """The tags to copy, in a deterministic order (see the module docstring).

    `min_tags` is not checked here; call `check_min_tags` with the result.
    """
    source = _unique(tags)
    chosen = [tag for tag in source if rules.candidate(tag)]
    if rules.sort == "semver":
        versioned = [(v, t) for t in chosen if (v := parse_tag_version(t)) is not None]
        versioned.sort()
        chosen = [tag for _, tag in versioned]
    else:
        chosen.sort()
    if rules.latest is not None:
        chosen = chosen[-rules.latest :]
    present = set(source)
    selected = set(chosen)
    extra = [tag for tag in _unique(rules.include) if tag in present and tag not in selected]
    return chosen + extra


def missing_includes(tags: Iterable[str], rules: TagRules) -> list[str]:
    """The `include` literals that the source tag list does not have (to report, not invent)."""
    present = set(tags)
    return [tag for tag in _unique(rules.include) if tag not in present]


def check_min_tags(selected: Sequence[str], rules: TagRules, what: str = "mapping") -> None:
    """FilterError when fewer than `min_tags` tags were selected; `what` names the mapping."""
    if rules.min_tags is not None and len(selected) < rules.min_tags:
        count = len(selected)
        raise FilterError(
            f"{what} selected {count} tag{'' if count == 1 else 's'}, min_tags is {rules.min_tags}"
        )


def immutable_glob_matches(tag: str, pattern: str | None) -> bool:
    """Whether `tag` matches the `immutable_tags` glob (never, when there is none)."""
    return bool(pattern) and fnmatchcase(tag, pattern)


# ---------------------------------------------------------------------------------------------
# platforms


def _children(index: ImageIndex | Sequence[Descriptor]) -> tuple[Descriptor, ...]:
    return index.manifests if isinstance(index, ImageIndex) else tuple(index)


def _is_attestation(child: Descriptor) -> bool:
    return REFERENCE_TYPE in child.annotations


def source_platforms(index: ImageIndex | Sequence[Descriptor]) -> list[Platform]:
    """The distinct platforms an index offers, in its order (attestation manifests left out)."""
    seen: dict[str, Platform] = {}
    for child in _children(index):
        if child.platform is not None and not _is_attestation(child):
            seen.setdefault(str(child.platform), child.platform)
    return list(seen.values())


def select_platforms(
    index: ImageIndex | Sequence[Descriptor], wanted: Sequence[Platform]
) -> list[Descriptor]:
    """The children to keep, in source order: those matching any wanted platform, and the
    attestation manifests of kept children. FilterError when no child matches."""
    wanted = [Platform.parse(w) if isinstance(w, str) else w for w in wanted]
    if not wanted:
        raise FilterError("platforms: the list is empty; name at least one, e.g. linux/amd64")
    children = _children(index)
    matched = {
        id(child)
        for child in children
        if child.platform is not None
        and not _is_attestation(child)
        and any(w.matches(child.platform) for w in wanted)
    }
    if not matched:
        names = ", ".join(str(w) for w in wanted)
        offered = ", ".join(str(p) for p in source_platforms(children))
        has = f"the index has {offered}" if offered else "the index has no platform-specific child"
        raise FilterError(f"no child matches {names}; {has}")
    kept_digests = {str(child.digest) for child in children if id(child) in matched}
    return [
        child
        for child in children
        if id(child) in matched
        or (_is_attestation(child) and child.annotations.get(REFERENCE_DIGEST) in kept_digests)
    ]


def filtered_index(index: ImageIndex, wanted: Sequence[Platform]) -> bytes | None:
    """The bytes of an index with only the wanted platforms, or None when every child is kept
    (the source bytes are pushed unchanged, same digest). New bytes mean a new digest."""
    keep = select_platforms(index, wanted)
    if len(keep) == len(index.manifests):
        return None
    return build_index(index, keep)
