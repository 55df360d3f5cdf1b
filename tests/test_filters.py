"""Tag filters (glob, semver, include, exclude, sort, latest, min_tags) and the platform filter."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from semver import Version

from ocync_core.digest import Digest
from ocync_core.errors import EXIT_BAD_INPUT, BadInput
from ocync_core.filters import (
    FilterError,
    TagRules,
    check_min_tags,
    filtered_index,
    immutable_glob_matches,
    missing_includes,
    parse_semver_range,
    parse_tag_version,
    select_platforms,
    select_tags,
    source_platforms,
)
from ocync_core.manifest import Platform, parse_manifest

TAGS = [
    "latest",
    "sha-abc",
    "v1.2.3",
    "1.2",
    "1.2.3-r1",
    "1.2.4",
    "1.10.0",
    "1.10.0-alpine",
    "2.0.0",
    "2.0.0-rc.1",
    "3.1.5",
    "edge",
]

# ---------------------------------------------------------------------------------------------
# versions of tags


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("v1.2.3", Version(1, 2, 3)),
        ("V1.2.3", Version(1, 2, 3)),
        ("1.2", Version(1, 2, 0)),
        ("20", Version(20, 0, 0)),
        ("22.04", Version(22, 4, 0)),
        ("1.2.3-alpine", Version(1, 2, 3, "alpine")),
        ("1.2.3-r1", Version(1, 2, 3, "r1")),
        ("1.2.3-alpine3.18", Version(1, 2, 3, "alpine3.18")),
        ("2.0.0-rc.1", Version(2, 0, 0, "rc.1")),
        ("1.2-bookworm", Version(1, 2, 0, "bookworm")),
        ("latest", None),
        ("sha-abc", None),
        ("edge", None),
        ("1.2.3.4", None),
        ("1.2.3_x", None),
        ("1.2.3-", None),
        ("v", None),
        ("", None),
        ("1..2", None),
        ("\u0661.\u0662.\u0663", None),  # Arabic-Indic digits are not tag characters
    ],
)
def test_parse_tag_version(tag, expected):
    version = parse_tag_version(tag)
    assert version == expected
    if expected is not None:
        assert version.prerelease == expected.prerelease


# ---------------------------------------------------------------------------------------------
# semver ranges


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        (">=1.2 <2", ">=1.2.0 <2.0.0"),
        (">=1.0.0, <2.0.0", ">=1.0.0 <2.0.0"),
        (">=1.0.0,<2.0.0", ">=1.0.0 <2.0.0"),
        (">= 1.2 < 2", ">=1.2.0 <2.0.0"),
        ("^1.4", ">=1.4.0 <2.0.0"),
        ("^1.4.2", ">=1.4.2 <2.0.0"),
        ("^0.2.3", ">=0.2.3 <0.3.0"),
        ("^0.0.3", ">=0.0.3 <0.0.4"),
        ("^0.0", ">=0.0.0 <0.1.0"),
        ("^0", ">=0.0.0 <1.0.0"),
        ("~3.1", ">=3.1.0 <3.2.0"),
        ("~3.1.4", ">=3.1.4 <3.2.0"),
        ("~3", ">=3.0.0 <4.0.0"),
        ("1.x", ">=1.0.0 <2.0.0"),
        ("1.2.*", ">=1.2.0 <1.3.0"),
        ("1.X.x", ">=1.0.0 <2.0.0"),
        ("1", ">=1.0.0 <2.0.0"),
        ("v1.2", ">=1.2.0 <1.3.0"),
        ("=1.2.3", "=1.2.3"),
        ("1.2.3", "=1.2.3"),
        (">1.2", ">=1.3.0"),
        (">1", ">=2.0.0"),
        (">1.2.3", ">1.2.3"),
        ("<=1.2", "<1.3.0"),
        ("<=1.2.3", "<=1.2.3"),
        ("<1.2", "<1.2.0"),
        ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"),
        ("1.2.3 - 2.3", ">=1.2.3 <2.4.0"),
        ("1.2.3 - 2", ">=1.2.3 <3.0.0"),
        ("*", "*"),
        ("x", "*"),
        ("<*", "<0.0.0"),
        ("1.x || >=3.1", ">=1.0.0 <2.0.0 || >=3.1.0"),
        ("^1 || <*", ">=1.0.0 <2.0.0"),
    ],
)
def test_semver_range_syntaxes(text, normal):
    assert str(parse_semver_range(text)) == normal


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (">=1.2 <2", ["1.2.0", "1.9.9", "1.2"], ["1.1.9", "2.0.0", "2"]),
        ("^1.4", ["1.4.0", "1.99.0"], ["1.3.9", "2.0.0"]),
        ("~3.1", ["3.1.0", "3.1.99"], ["3.2.0", "3.0.9"]),
        ("1.x", ["1.0.0", "1.5.5"], ["0.9.0", "2.0.0"]),
        (">=1.0.0, <2.0.0", ["1.0.0"], ["2.0.0", "0.1.0"]),
        ("1.2.3 || 2.x", ["1.2.3", "2.7.1"], ["1.2.4", "3.0.0"]),
        ("*", ["0.0.0", "99.1.1"], []),
    ],
)
def test_semver_range_membership(text, inside, outside):
    r = parse_semver_range(text)
    for version in inside:
        assert r.matches_tag(version), (text, version)
        assert parse_tag_version(version) in r
    for version in outside:
        assert not r.matches_tag(version), (text, version)


def test_range_compares_version_core_so_suffixed_tags_match():
    r = parse_semver_range(">=1.2 <2")
    assert r.matches_tag("1.4.0-alpine")
    assert r.matches_tag("1.2.0-r1")
    assert not r.matches_tag("2.0.0-rc.1")
    assert not r.matches_tag("latest")
    assert "1.4.0" not in r  # only Version objects are members


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("garbage", "'garbage' is not a version"),
        (">=1.2 foo", "'foo' is not a version"),
        (">=a", "'a' is not a version"),
        (">=", "has no version after it"),
        ("1 ||", "empty alternative"),
        ("|| 1", "empty alternative"),
        ("1.x.3", "a number cannot follow a wildcard"),
        ("1.2.3.4", "is not a version"),
        (">=1.2.3-rc.1", "names a pre-release"),
        ("~>1.2", "two operators"),
        (">=>1", "two operators"),
        ("1 - 2 - 3", "more than one hyphen range"),
        (", ,", "empty comparator set"),
        (">=1.2<2", "is not a version"),
    ],
)
def test_bad_range_names_the_text(text, fragment):
    with pytest.raises(FilterError) as info:
        parse_semver_range(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert isinstance(info.value, BadInput)


# ---------------------------------------------------------------------------------------------
# tag rules, one at a time


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        # nothing: every tag, alphabetical
        (TagRules(), sorted(TAGS)),
        # glob: any of them
        (TagRules(glob=("1.2*",)), ["1.2", "1.2.3-r1", "1.2.4"]),
        (TagRules(glob=("v*", "2.*")), ["2.0.0", "2.0.0-rc.1", "v1.2.3"]),
        (TagRules(glob=("*-alpine",)), ["1.10.0-alpine"]),
        (TagRules(glob=("nothing*",)), []),
        (TagRules(glob="sha-*"), ["sha-abc"]),  # a single string is one glob
        (TagRules(glob=("V1.2.3",)), []),  # case-sensitive
        # semver: non-versions dropped
        (
            TagRules(semver="^1"),
            ["1.10.0", "1.10.0-alpine", "1.2", "1.2.3-r1", "1.2.4", "v1.2.3"],
        ),
        (TagRules(semver=">=2"), ["2.0.0", "2.0.0-rc.1", "3.1.5"]),
        (TagRules(semver="~1.2"), ["1.2", "1.2.3-r1", "1.2.4", "v1.2.3"]),
        # exclude
        (
            TagRules(exclude=("*-*",)),
            ["1.10.0", "1.2", "1.2.4", "2.0.0", "3.1.5", "edge", "latest", "v1.2.3"],
        ),
        (TagRules(exclude=("latest", "edge", "sha-*", "*.*")), []),
        # sort alpha
        (TagRules(sort="alpha"), sorted(TAGS)),
        # sort semver: ascending precedence, pre-release before release, non-versions dropped
        (
            TagRules(sort="semver"),
            [
                "1.2",
                "1.2.3-r1",
                "v1.2.3",
                "1.2.4",
                "1.10.0-alpine",
                "1.10.0",
                "2.0.0-rc.1",
                "2.0.0",
                "3.1.5",
            ],
        ),
        # latest N
        (TagRules(sort="semver", latest=2), ["2.0.0", "3.1.5"]),
        (TagRules(sort="semver", latest=100), None),
        (TagRules(sort="alpha", latest=3), ["latest", "sha-abc", "v1.2.3"]),
        # include only: literal
        (TagRules(include=("latest", "1.2")), ["latest", "1.2"]),
    ],
)
def test_single_rules(rules, expected):
    got = select_tags(TAGS, rules)
    if expected is None:  # latest larger than the list: everything the sort keeps
        expected = select_tags(TAGS, TagRules(sort="semver"))
    assert got == expected


def test_semver_sort_ties_broken_by_tag_text():
    tags = ["v1.2.0", "1.2", "1.2.0", "01.2.0"]
    assert select_tags(tags, TagRules(sort="semver")) == ["01.2.0", "1.2", "1.2.0", "v1.2.0"]
    assert select_tags(reversed(tags), TagRules(sort="semver")) == select_tags(
        tags, TagRules(sort="semver")
    )


def test_semver_sort_is_numeric_not_alphabetical():
    tags = ["1.9.0", "1.10.0", "1.100.0", "10.0.0", "9.0.0"]
    assert select_tags(tags, TagRules(sort="semver")) == [
        "1.9.0",
        "1.10.0",
        "1.100.0",
        "9.0.0",
        "10.0.0",
    ]
    assert select_tags(tags, TagRules(sort="alpha")) == sorted(tags)


# ---------------------------------------------------------------------------------------------
# include


def test_include_kept_even_when_excluded_or_outside_the_rules():
    rules = TagRules(semver=">=3", exclude=("3.*",), include=("latest", "1.2"))
    assert select_tags(TAGS, rules) == ["latest", "1.2"]


def test_include_comes_after_the_sorted_selection_without_duplicates():
    rules = TagRules(sort="semver", latest=2, include=("latest", "3.1.5", "edge", "latest"))
    assert select_tags(TAGS, rules) == ["2.0.0", "3.1.5", "latest", "edge"]


def test_include_absent_from_source_is_reported_not_invented():
    rules = TagRules(glob=("2.*",), include=("latest", "9.9.9"))
    assert select_tags(TAGS, rules) == ["2.0.0", "2.0.0-rc.1", "latest"]
    assert missing_includes(TAGS, rules) == ["9.9.9"]
    assert missing_includes(TAGS, TagRules(include=("latest",))) == []


@pytest.mark.parametrize(
    ("rules", "literal"),
    [
        (TagRules(include=("latest",)), True),
        (TagRules(include=("latest",), sort="alpha"), True),
        (TagRules(include=("latest",), min_tags=1), True),
        (TagRules(), False),
        (TagRules(include=("latest",), glob=("v*",)), False),
        (TagRules(include=("latest",), semver="^1"), False),
        (TagRules(include=("latest",), exclude=("*-rc*",)), False),
        (TagRules(include=("latest",), sort="semver", latest=5), False),
        (TagRules(glob=("latest",)), False),
    ],
)
def test_literal_only(rules, literal):
    assert rules.literal_only is literal


def test_include_with_latest_selects_versions_from_the_list_too():
    rules = TagRules(include=("latest",), sort="semver", latest=1)
    assert select_tags(TAGS, rules) == ["3.1.5", "latest"]


def test_include_with_exclude_only_lists_all_but_excluded():
    rules = TagRules(include=("2.0.0-rc.1",), exclude=("*-*",))
    assert select_tags(TAGS, rules) == [
        "1.10.0",
        "1.2",
        "1.2.4",
        "2.0.0",
        "3.1.5",
        "edge",
        "latest",
        "v1.2.3",
        "2.0.0-rc.1",
    ]


# ---------------------------------------------------------------------------------------------
# combinations


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (TagRules(glob=("1.*",), semver=">=1.2.4"), ["1.10.0", "1.10.0-alpine", "1.2.4"]),
        (
            TagRules(glob=("1.*",), semver=">=1.2.4", exclude=("*-alpine",), sort="semver"),
            ["1.2.4", "1.10.0"],
        ),
        (
            TagRules(semver="^1", exclude=("*-*",), sort="semver", latest=2, include=("latest",)),
            ["1.2.4", "1.10.0", "latest"],
        ),
        (TagRules(glob=("v*", "3.*"), semver="<3", sort="alpha"), ["v1.2.3"]),
        (TagRules(glob=("*",), exclude=("*",), include=("edge",)), ["edge"]),
        (
            TagRules(glob=("*.*",), sort="alpha", latest=2, exclude=("v*",)),
            ["2.0.0-rc.1", "3.1.5"],
        ),
    ],
)
def test_combined_rules(rules, expected):
    assert select_tags(TAGS, rules) == expected


def test_duplicate_and_unordered_input_is_handled():
    tags = ["b", "a", "b", "c", "a"]
    assert select_tags(tags, TagRules()) == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------
# validation of the rules


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"latest": 3}, "tags.latest needs tags.sort"),
        ({"latest": 0, "sort": "alpha"}, "at least 1"),
        ({"latest": -1, "sort": "alpha"}, "non-negative integer"),
        ({"latest": True, "sort": "alpha"}, "non-negative integer"),
        ({"min_tags": -2}, "tags.min_tags"),
        ({"sort": "newest"}, "tags.sort: 'newest' must be one of: semver, alpha"),
        ({"semver": ">=1 banana"}, "semver range '>=1 banana'"),
        ({"include": ("bad tag",)}, "tags.include: 'bad tag' is not a valid tag"),
        ({"include": (".hidden",)}, "not a valid tag"),
        ({"include": ("x" * 129,)}, "not a valid tag"),
        ({"glob": ("",)}, "tags.glob"),
        ({"exclude": (None,)}, "tags.exclude"),
    ],
)
def test_invalid_rules(kwargs, fragment):
    with pytest.raises(FilterError) as info:
        TagRules(**kwargs)
    assert fragment in str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_rules_are_frozen_and_hashable_with_lists_as_tuples():
    rules = TagRules(glob=["a*"], include=["b"], exclude=["c"], semver="^1")
    assert rules.glob == ("a*",) and rules.include == ("b",) and rules.exclude == ("c",)
    assert hash(rules) == hash(TagRules(glob=("a*",), include=("b",), exclude=("c",), semver="^1"))
    assert str(rules.semver_range) == ">=1.0.0 <2.0.0"
    with pytest.raises(AttributeError):
        rules.glob = ()  # type: ignore[misc]


def test_from_model_duck_typed():
    model = SimpleNamespace(
        glob=["v*"],
        semver=">=1.2 <2",
        include=["latest"],
        exclude=["*-rc*"],
        sort="semver",
        latest=3,
        min_tags=1,
        immutable_tags="v*",
    )
    rules = TagRules.from_model(model)
    assert rules == TagRules(
        glob=("v*",),
        semver=">=1.2 <2",
        include=("latest",),
        exclude=("*-rc*",),
        sort="semver",
        latest=3,
        min_tags=1,
    )
    assert TagRules.from_model(None) == TagRules()
    assert TagRules.from_model(SimpleNamespace(glob=None, include=None)) == TagRules()


def test_from_model_enum_sort_and_errors():
    import enum

    class Sort(enum.Enum):
        semver = "semver"

    assert TagRules.from_model(SimpleNamespace(sort=Sort.semver)).sort == "semver"
    with pytest.raises(FilterError, match=r"needs tags\.sort"):
        TagRules.from_model(SimpleNamespace(latest=2, sort=None))


# ---------------------------------------------------------------------------------------------
# min_tags and immutable tags


def test_min_tags_message():
    rules = TagRules(glob=("2.*",), min_tags=3)
    selected = select_tags(TAGS, rules)  # select_tags itself does not enforce min_tags
    assert selected == ["2.0.0", "2.0.0-rc.1"]
    with pytest.raises(FilterError) as info:
        check_min_tags(selected, rules)
    assert str(info.value) == "mapping selected 2 tags, min_tags is 3"
    assert info.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(FilterError, match=r"^mapping library/nginx selected 1 tag, min_tags is 2$"):
        check_min_tags(["a"], TagRules(min_tags=2), what="mapping library/nginx")


@pytest.mark.parametrize(
    ("selected", "min_tags"), [([], None), ([], 0), (["a"], 1), (["a", "b"], 1)]
)
def test_min_tags_satisfied(selected, min_tags):
    check_min_tags(selected, TagRules(min_tags=min_tags))


@pytest.mark.parametrize(
    ("tag", "pattern", "expected"),
    [
        ("v1.2.3", "v*", True),
        ("1.2.3", "v*", False),
        ("1.2.3", "*.*.*", True),
        ("latest", "*.*.*", False),
        ("sha-abc", "sha-*", True),
        ("SHA-abc", "sha-*", False),
        ("latest", None, False),
        ("latest", "", False),
    ],
)
def test_immutable_glob_matches(tag, pattern, expected):
    assert immutable_glob_matches(tag, pattern) is expected


# ---------------------------------------------------------------------------------------------
# properties

tag_text = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True)
version_tag = st.builds(
    lambda v, a, b, c, s: f"{v}{a}.{b}.{c}{s}",
    st.sampled_from(["", "v"]),
    st.integers(0, 12),
    st.integers(0, 12),
    st.integers(0, 12),
    st.sampled_from(["", "-alpine", "-r1", "-rc.1"]),
)
any_tag = st.one_of(tag_text, version_tag, st.sampled_from(["latest", "edge", "sha-abc"]))
glob_text = st.sampled_from(["*", "v*", "1.*", "*-*", "*.*.*", "l*", "*[0-9]", "?.?.?"])
rules_strategy = st.builds(
    lambda glob, semver, include, exclude, sort, latest: TagRules(
        glob=tuple(glob),
        semver=semver,
        include=tuple(include),
        exclude=tuple(exclude),
        sort=sort,
        latest=latest if sort else None,
    ),
    st.lists(glob_text, max_size=3),
    st.sampled_from([None, "*", "^1", ">=2 <5", "~1.2", "1.x || 3.x", "<*"]),
    st.lists(any_tag, max_size=3),
    st.lists(glob_text, max_size=2),
    st.sampled_from([None, "semver", "alpha"]),
    st.one_of(st.none(), st.integers(1, 6)),
)


@given(st.lists(any_tag, max_size=30), rules_strategy)
def test_properties_of_select_tags(tags, rules):
    out = select_tags(tags, rules)
    assert set(out) <= set(tags) | set(rules.include)
    assert set(out) <= set(tags)  # include literals are never invented
    assert len(out) == len(set(out))
    assert out == select_tags(list(reversed(tags)), rules)  # order of the input doesn't matter
    assert out == select_tags(tags + tags, rules)
    includes = set(rules.include)
    listed = [tag for tag in out if tag not in includes]
    for tag in listed:  # exclude respected (only an include literal overrides it)
        assert not any(fnmatchcase(tag, g) for g in rules.exclude)
    if rules.latest is not None:
        assert len(listed) <= rules.latest
    for tag in includes & set(tags):
        assert tag in out
    assert set(out).isdisjoint(missing_includes(tags, rules))


@given(st.text(max_size=40))
def test_range_parser_raises_only_filter_error(text):
    try:
        r = parse_semver_range(text)
    except FilterError as exc:
        assert repr(text[:200]) in str(exc)
    else:
        normal = str(parse_semver_range(str(r)))  # the normal form is a valid, stable range
        assert normal == str(r)


@given(st.text(max_size=40))
def test_parse_tag_version_is_total(text):
    version = parse_tag_version(text)
    assert version is None or isinstance(version, Version)


@given(st.lists(any_tag, max_size=30))
def test_glob_star_alone_is_sorted_dedup_input(tags):
    assert select_tags(tags, TagRules(glob=("*",))) == sorted(set(tags))
    assert select_tags(tags, TagRules()) == sorted(set(tags))


@given(st.lists(version_tag, min_size=1, max_size=20), st.integers(1, 5))
def test_latest_keeps_the_highest_versions(tags, n):
    out = select_tags(tags, TagRules(sort="semver", latest=n))
    assert len(out) == min(n, len(set(tags)))
    versions = sorted(parse_tag_version(t) for t in set(tags))
    assert sorted(parse_tag_version(t) for t in out) == versions[-len(out) :]


@given(
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 5),
    st.sampled_from(["^", "~", ">=", "<", "<=", ">", "="]),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_range_agrees_with_explicit_bounds(a, b, c, op, x, y, z):
    r = parse_semver_range(f"{op}{a}.{b}.{c}")
    v = (x, y, z)
    bound = (a, b, c)
    if op == "^":
        upper = (a + 1, 0, 0) if a else ((0, b + 1, 0) if b else (0, 0, c + 1))
        expected = bound <= v < upper
    elif op == "~":
        expected = bound <= v < (a, b + 1, 0)
    else:
        expected = {
            ">=": v >= bound,
            "<": v < bound,
            "<=": v <= bound,
            ">": v > bound,
            "=": v == bound,
        }[op]
    assert r.contains(Version(*v)) is expected


# ---------------------------------------------------------------------------------------------
# platforms


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def _child(n: int, platform: dict | None, annotations: dict | None = None) -> dict:
    doc: dict = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _digest(n),
        "size": 100 + n,
    }
    if platform is not None:
        doc["platform"] = platform
    if annotations:
        doc["annotations"] = annotations
    return doc


def _attestation(n: int, of: int) -> dict:
    return _child(
        n,
        {"architecture": "unknown", "os": "unknown"},
        {
            "vnd.docker.reference.digest": _digest(of),
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )


def _index(*children: dict):
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list(children),
        "annotations": {"org.example": "kept"},
    }
    return parse_manifest(json.dumps(doc, indent=2).encode())


AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}
ARMV7 = {"architecture": "arm", "os": "linux", "variant": "v7"}
ARMV6 = {"architecture": "arm", "os": "linux", "variant": "v6"}
S390X = {"architecture": "s390x", "os": "linux"}
WINDOWS = {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1"}

BUILDX = _index(
    _child(1, AMD64),
    _child(2, ARM64),
    _child(3, ARMV7),
    _attestation(11, 1),
    _attestation(12, 2),
    _attestation(13, 3),
)


def _digests(descriptors) -> list[int]:
    return [int(str(d.digest).split(":")[1], 16) for d in descriptors]


@pytest.mark.parametrize(
    ("wanted", "kept"),
    [
        (["linux/amd64"], [1, 11]),
        (["linux/arm64"], [2, 12]),  # no variant wanted: any variant
        (["linux/arm64/v8"], [2, 12]),
        (["linux/arm/v7"], [3, 13]),
        (["linux/arm"], [3, 13]),
        (["linux/amd64", "linux/arm/v7"], [1, 3, 11, 13]),
        (["linux/arm/v7", "linux/amd64"], [1, 3, 11, 13]),  # source order, not wanted order
        (["linux/amd64", "linux/s390x"], [1, 11]),  # one of several is enough
        (["linux/amd64", "linux/arm64", "linux/arm"], [1, 2, 3, 11, 12, 13]),
    ],
)
def test_select_platforms(wanted, kept):
    chosen = select_platforms(BUILDX, [Platform.parse(w) for w in wanted])
    assert _digests(chosen) == kept
    assert _digests(select_platforms(BUILDX.manifests, wanted)) == kept  # descriptors, strings


def test_variant_compared_when_both_name_one():
    index = _index(
        _child(1, ARMV6), _child(2, ARMV7), _child(3, {"architecture": "arm", "os": "linux"})
    )
    assert _digests(select_platforms(index, [Platform.parse("linux/arm/v7")])) == [2, 3]
    assert _digests(select_platforms(index, [Platform.parse("linux/arm/v6")])) == [1, 3]
    assert _digests(select_platforms(index, [Platform.parse("linux/arm")])) == [1, 2, 3]


def test_os_must_match_too():
    index = _index(_child(1, AMD64), _child(2, WINDOWS))
    assert _digests(select_platforms(index, [Platform.parse("windows/amd64")])) == [2]
    assert _digests(select_platforms(index, [Platform.parse("linux/amd64")])) == [1]


def test_children_without_platform_dropped():
    index = _index(_child(1, AMD64), _child(2, None), _child(3, ARM64))
    assert _digests(select_platforms(index, ["linux/amd64"])) == [1]


def test_zero_matches_lists_the_platforms_the_source_has():
    with pytest.raises(FilterError) as info:
        select_platforms(BUILDX, [Platform.parse("linux/s390x")])
    assert str(info.value) == (
        "no child matches linux/s390x; the index has linux/amd64, linux/arm64/v8, linux/arm/v7"
    )
    assert info.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(FilterError, match="no child matches linux/s390x, linux/arm/v6;"):
        select_platforms(BUILDX, ["linux/s390x", "linux/arm/v6"])


def test_attestations_never_match_on_their_own():
    with pytest.raises(FilterError, match="the index has linux/amd64"):
        select_platforms(_index(_child(1, AMD64), _attestation(2, 1)), ["unknown/unknown"])


def test_zero_matches_in_an_index_without_platforms():
    index = _index(_child(1, None), _child(2, None))
    with pytest.raises(FilterError, match="the index has no platform-specific child"):
        select_platforms(index, ["linux/amd64"])


def test_empty_wanted_list_is_an_error():
    with pytest.raises(FilterError, match="platforms: the list is empty"):
        select_platforms(BUILDX, [])


def test_source_platforms_distinct_in_order():
    index = _index(_child(1, ARM64), _child(2, AMD64), _child(3, ARM64), _attestation(4, 1))
    assert [str(p) for p in source_platforms(index)] == ["linux/arm64/v8", "linux/amd64"]


def test_filtered_index_none_when_every_child_is_kept():
    wanted = [Platform.parse(p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")]
    assert filtered_index(BUILDX, wanted) is None
    assert filtered_index(BUILDX, [*wanted, Platform.parse("linux/s390x")]) is None


def test_filtered_index_new_bytes_and_digest():
    raw = filtered_index(BUILDX, [Platform.parse("linux/arm64")])
    assert raw is not None
    new = parse_manifest(raw)
    assert new.digest != BUILDX.digest and new.digest == Digest.of(raw)
    assert _digests(new.manifests) == [2, 12]
    assert new.manifests == tuple(d for d in BUILDX.manifests if _digests([d])[0] in (2, 12))
    assert new.annotations == {"org.example": "kept"}
    assert new.media_type == BUILDX.media_type


def test_filtered_index_drops_orphan_platformless_children():
    index = _index(_child(1, AMD64), _child(2, ARM64), _child(3, None))
    raw = filtered_index(index, [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")])
    assert raw is not None
    assert _digests(parse_manifest(raw).manifests) == [1, 2]


def test_filtered_index_zero_match_error():
    with pytest.raises(FilterError, match="no child matches linux/s390x"):
        filtered_index(_index(_child(1, AMD64)), [Platform.parse("linux/s390x")])
    assert select_platforms(_index(_child(1, S390X)), ["linux/s390x"])
