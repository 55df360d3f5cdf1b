"""Reference parsing: the distribution/reference grammar and docker's normalisation."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocync_core.digest import Digest
from ocync_core.errors import BadInput, InvalidReference
from ocync_core.reference import (
    DEFAULT_DOMAIN,
    Reference,
    validate_repository,
    validate_tag,
)

D = Digest.of(b"hello")
HEX = D.hex

VALID = [
    # text, domain, repository, tag, digest
    ("nginx", "docker.io", "library/nginx", None, None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("library/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/nginx:x", "docker.io", "library/nginx", "x", None),
    ("index.docker.io/user/app", "docker.io", "user/app", None, None),
    ("user/app:v1", "docker.io", "user/app", "v1", None),
    ("ghcr.io/org/team/app", "ghcr.io", "org/team/app", None, None),
    ("localhost/app", "localhost", "app", None, None),
    ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None),
    ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
    ("[2001:db8::1]/x", "[2001:db8::1]", "x", None, None),
    ("registry:5000/x", "registry:5000", "x", None, None),
    ("Registry.Example.COM/x", "Registry.Example.COM", "x", None, None),
    (f"nginx@sha256:{HEX}", "docker.io", "library/nginx", None, D),
    (f"ghcr.io/a/b:1.0@sha256:{HEX}", "ghcr.io", "a/b", "1.0", D),
    ("a__b/c---d/e.f_g", "docker.io", "a__b/c---d/e.f_g", None, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # as docker reads it
    ("x:_Tag-1.2", "docker.io", "library/x", "_Tag-1.2", None),
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, None),
]


@pytest.mark.parametrize(("text", "domain", "repository", "tag", "digest"), VALID)
def test_parse_valid(text, domain, repository, tag, digest):
    ref = Reference.parse(text)
    assert (ref.domain, ref.repository, ref.tag, ref.digest) == (domain, repository, tag, digest)
    assert Reference.parse(str(ref)) == ref


INVALID = [
    # text, a fragment the message must contain
    ("", "empty"),
    ("Foo/bar:x", "reference 'Foo/bar:x': repository path component 'Foo' must be lowercase"),
    ("ghcr.io/Org/app", "'Org' must be lowercase"),
    ("a/b:c:d", "reference 'a/b:c:d': repository path component 'b:c'"),
    ("../x", "path traversal"),
    ("ghcr.io/a/../b", "path traversal"),
    ("a//b", "empty component"),
    ("/a", "empty component"),
    ("a/", "empty component"),
    ("a b", "control character"),
    ("a\nb", "control character"),
    ("a\x00b", "control character"),
    ("a:b/c", "domain 'a:b'"),
    ("-bad.com/x", "domain '-bad.com'"),
    ("ghcr.io/-a", "'-a'"),
    ("ghcr.io/a-", "'a-'"),
    ("ghcr.io/a..b", "'a..b'"),
    ("ghcr.io/a___b", "'a___b'"),
    ("ghcr.io/caf\u00e9", "'caf\u00e9'"),
    ("x:" + "t" * 129, "is longer than 128 characters"),
    ("x:-tag", "tag '-tag'"),
    ("x:", "tag ''"),
    ("x:t\u00e9", "tag 't\u00e9'"),
    ("x@sha256:abc", "reference 'x@sha256:abc'"),
    ("x@md5:" + "a" * 32, "not supported"),
    (f"x@sha256:{HEX}@sha256:{HEX}", "digest"),
    (HEX, "64-character hex"),
    ("ghcr.io/" + "a" * 256, "longer than 255"),
    ("ghcr.io/" + "a" * 250, "longer than 255"),  # the whole name counts, not just the path
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_parse_invalid(text, fragment):
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, BadInput)


def test_properties_and_builders():
    ref = Reference.parse("nginx")
    assert ref.name == "docker.io/library/nginx"
    assert ref.identifier == "latest"
    assert ref.familiar == "nginx:latest"
    assert str(ref) == "docker.io/library/nginx"
    tagged = ref.with_tag("1.25")
    assert tagged.identifier == "1.25" and str(tagged) == "docker.io/library/nginx:1.25"
    pinned = tagged.with_digest(D)
    assert pinned.identifier == str(D)
    assert pinned.familiar == f"nginx:1.25@{D}"
    moved = pinned.with_repository("mirror/nginx")
    assert str(moved) == f"docker.io/mirror/nginx:1.25@{D}"
    assert Reference.parse("user/app").familiar == "user/app:latest"
    assert Reference.parse("library/a/b").familiar == "library/a/b:latest"
    assert Reference.parse("ghcr.io/a/b@" + str(D)).familiar == f"ghcr.io/a/b@{D}"
    with pytest.raises(InvalidReference, match="'Bad'"):
        ref.with_repository("x/Bad")
    with pytest.raises(InvalidReference, match="tag"):
        ref.with_tag("no/slash")


def test_constructor_validates_and_normalises():
    assert Reference("index.docker.io", "nginx") == Reference.parse("nginx")
    with pytest.raises(InvalidReference, match="Docker Hub namespace"):
        Reference("registry", "x")  # would print as 'registry/x', a Docker Hub name
    with pytest.raises(InvalidReference, match="must be lowercase"):
        Reference("ghcr.io", "A")
    with pytest.raises(InvalidReference, match="host"):
        Reference("bad host", "a")


def test_validate_helpers():
    assert validate_repository("a/b-c") == "a/b-c"
    assert validate_tag("v1.0") == "v1.0"
    with pytest.raises(InvalidReference, match="repository 'a//b'"):
        validate_repository("a//b")
    with pytest.raises(InvalidReference, match="'\\.\\.'"):
        validate_repository("a/../b")
    with pytest.raises(InvalidReference, match="longer than 128"):
        validate_tag("t" * 129)


# --- Hypothesis: build references from the grammar ------------------------------------------

LOWER_ALNUM = string.ascii_lowercase + string.digits
alnum = st.text(LOWER_ALNUM, min_size=1, max_size=6)
separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = draw(st.lists(alnum, min_size=1, max_size=3))
    out = parts[0]
    for part in parts[1:]:
        out += draw(separator) + part
    return out


paths = st.lists(path_components(), min_size=1, max_size=4).map("/".join)
domain_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
port = st.integers(1, 65535).map(lambda p: f":{p}")
domains = st.one_of(
    st.builds(lambda a, b, p: f"{a}.{b}{p}", domain_label, domain_label, st.just("") | port),
    st.builds(lambda a, p: f"{a}{p}", domain_label, port),
    st.builds(lambda p: f"localhost{p}", st.just("") | port),
    st.builds(lambda p: f"[::1]{p}", st.just("") | port),
    st.just(DEFAULT_DOMAIN),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.binary(max_size=32).map(Digest.of)
references = st.builds(Reference, domains, paths, st.none() | tags, st.none() | digests)


@given(references)
def test_round_trip(ref):
    assert Reference.parse(str(ref)) == ref
    if ref.tag is not None:
        assert Reference.parse(ref.familiar) == ref


@given(paths, st.data())
def test_uppercase_rejected(path, data):
    i = data.draw(st.integers(0, len(path) - 1))
    if not path[i].isalpha():
        path = path[:i] + "a" + path[i + 1 :]
    bad = path[:i] + path[i].upper() + path[i + 1 :]
    with pytest.raises(InvalidReference, match="must be lowercase"):
        Reference.parse(f"ghcr.io/{bad}:t")


@given(alnum, st.sampled_from(["..", "___", ".-", "-.", "_-", "-_", "._", ":"]), alnum, st.data())
def test_bad_separator_rejected(left, sep, right, data):
    component = data.draw(st.sampled_from([left + sep + right, sep + left, left + sep]))
    with pytest.raises(InvalidReference) as info:
        Reference.parse(f"ghcr.io/ns/{component}/x")
    assert repr(component) in str(info.value) or "traversal" in str(info.value)


@given(st.integers(256, 400))
def test_overlong_path_rejected(n):
    with pytest.raises(InvalidReference, match="longer than 255"):
        Reference.parse("ghcr.io/" + "a" * n)


@given(references, st.data())
def test_control_characters_rejected(ref, data):
    text = str(ref)
    i = data.draw(st.integers(0, len(text)))
    ctrl = data.draw(st.sampled_from([chr(c) for c in range(0x21)] + ["\x7f"]))
    with pytest.raises(InvalidReference, match="control character"):
        Reference.parse(text[:i] + ctrl + text[i:])


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_invalid_reference(text):
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    assert Reference.parse(str(ref)) == ref


def test_familiar_keeps_docker_io_when_dropping_it_would_change_the_meaning():
    ref = Reference("docker.io", "my.org/app", "1")
    assert ref.familiar == "docker.io/my.org/app:1"  # 'my.org/app' would name a registry
    assert Reference.parse(ref.familiar) == ref
    assert Reference("docker.io", "localhost/app", "1").familiar == "docker.io/localhost/app:1"
