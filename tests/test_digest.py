"""Digests: parsing, hashing, and the streaming verifier."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocync_core.digest import Digest, DigestVerifier
from ocync_core.errors import BadInput, DigestMismatch, InvalidDigest

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_of_and_str():
    assert str(Digest.of(b"")) == EMPTY_SHA256
    d = Digest.of(b"abc", "sha512")
    assert d.algorithm == "sha512" and d.hex == hashlib.sha512(b"abc").hexdigest()
    assert Digest.parse(EMPTY_SHA256) == Digest.of(b"")
    assert Digest.of(b"").short == "sha256:e3b0c44298fc"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sha256", "no ':'"),
        ("SHA256:" + "a" * 64, "malformed algorithm"),
        ("md5:" + "a" * 32, "not supported"),
        ("sha256:" + "a" * 63, "64 lowercase hex"),
        ("sha256:" + "A" * 64, "64 lowercase hex"),
        ("sha256:" + "g" * 64, "64 lowercase hex"),
        ("sha512:" + "a" * 64, "128 lowercase hex"),
        (":" + "a" * 64, "malformed algorithm"),
    ],
)
def test_parse_invalid(text, fragment):
    with pytest.raises(InvalidDigest, match=fragment) as info:
        Digest.parse(text)
    assert isinstance(info.value, BadInput)


def test_verifier_accepts_matching_content():
    v = Digest.of(b"hello world").verifier()
    v.update(b"hello ")
    v.update(b"world")
    v.verify()
    assert v.size == 11


def test_verifier_mismatch_names_the_digest():
    expected = Digest.of(b"expected")
    v = DigestVerifier(expected, what="layer")
    v.update(b"something else")
    with pytest.raises(DigestMismatch) as info:
        v.verify()
    message = str(info.value)
    assert str(expected) in message and str(Digest.of(b"something else")) in message
    assert message.startswith("layer ")
    assert info.value.expected == expected


@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=20))
def test_verifier_over_any_chunking_equals_of(data, cuts):
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    expected = Digest.of(data)
    v = expected.verifier()
    for start, end in itertools.pairwise(points):
        v.update(data[start:end])
    assert v.actual() == expected and v.size == len(data)
    v.verify()


@given(st.sampled_from(["sha256", "sha512"]), st.binary(max_size=64))
def test_parse_of_round_trip(algorithm, data):
    d = Digest.of(data, algorithm)
    assert Digest.parse(str(d)) == d


@given(st.text(max_size=140))
def test_parse_arbitrary_text_raises_only_invalid_digest(text):
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(d) == text
