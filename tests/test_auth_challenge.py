"""WWW-Authenticate parsing: a table of real-world headers, then round-trips by Hypothesis."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocync_core.auth import Challenge, MalformedChallenge, parse_www_authenticate
from ocync_core.errors import AuthenticationError

HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/nginx:pull"'
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            HUB,
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/nginx:pull",
                    },
                )
            ],
            id="docker-hub",
        ),
        pytest.param(
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
            'scope="repository:team/app:pull,push"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://ghcr.io/token",
                        "service": "ghcr.io",
                        "scope": "repository:team/app:pull,push",
                    },
                )
            ],
            id="comma-in-quoted-scope",
        ),
        pytest.param(
            'Bearer realm="https://r/token",scope="repository:a:pull repository:b:pull,push"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://r/token",
                        "scope": "repository:a:pull repository:b:pull,push",
                    },
                )
            ],
            id="several-scopes",
        ),
        pytest.param(
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
            id="rfc7235-example-escaped-quotes",
        ),
        pytest.param(
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l==",
            [Challenge("basic", token68="YWxhZGRpbjpvcGVuc2VzYW1l==")],
            id="token68",
        ),
        pytest.param(
            'Basic abc=, Bearer realm="x"',
            [Challenge("basic", token68="abc="), Challenge("bearer", {"realm": "x"})],
            id="token68-then-challenge",
        ),
        pytest.param(
            '  bEaReR   REALM = "https://r/t" ,\tSerVice=reg ,  , basic  ',
            [Challenge("bearer", {"realm": "https://r/t", "service": "reg"}), Challenge("basic")],
            id="odd-spacing-mixed-case-empty-elements",
        ),
        pytest.param(
            'Basic realm="Registry Realm", Bearer realm="https://h/token",service="h"',
            [
                Challenge("basic", {"realm": "Registry Realm"}),
                Challenge("bearer", {"realm": "https://h/token", "service": "h"}),
            ],
            id="basic-and-bearer",
        ),
        pytest.param(
            "Bearer realm=https://auth.example/token,service=example",
            [Challenge("bearer", {"realm": "https://auth.example/token", "service": "example"})],
            id="unquoted-url-tolerated",
        ),
        pytest.param('Bearer realm=""', [Challenge("bearer", {"realm": ""})], id="empty-quoted"),
        # RFC 7235 ambiguity: `realm=` is a valid token68, so it is read as one.
        pytest.param("Bearer realm=", [Challenge("bearer", token68="realm=")], id="token68-ish"),
        pytest.param("Negotiate", [Challenge("negotiate")], id="bare-scheme"),
        pytest.param(
            'Bearer realm="a\\\\b"',
            [Challenge("bearer", {"realm": "a\\b"})],
            id="escaped-backslash",
        ),
    ],
)
def test_parse_table(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


def test_properties_and_normalisation() -> None:
    (challenge,) = parse_www_authenticate(HUB.replace("realm", "Realm"))
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scope == "repository:library/nginx:pull"
    assert Challenge("BASIC", {"Realm": "x"}) == Challenge("basic", {"realm": "x"})
    assert Challenge("basic").realm is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        'Bearer realm="unterminated',
        'Bearer realm="x" service="y"',
        "Bearer =x",
        'Bearer realm="x", realm="y"',
        "Basic abc, realm=x",
        '"Bearer"',
        'Bearer realm="a\x01b"',
        'Bear@r realm="x"',
        'Bearer realm="x\\',
    ],
)
def test_malformed(header: str) -> None:
    with pytest.raises(MalformedChallenge) as info:
        parse_www_authenticate(header)
    assert isinstance(info.value, AuthenticationError)
    assert "WWW-Authenticate" in str(info.value)


def test_malformed_message_truncates_the_header() -> None:
    header = 'Bearer realm="' + "x" * 5000
    with pytest.raises(MalformedChallenge) as info:
        parse_www_authenticate(header)
    assert len(str(info.value)) < 400
    assert "..." in str(info.value)


# -- Hypothesis: render challenges with quoting and noise, parse them back ---------------------

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKEN68_CHARS = "-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
# Values: anything a quoted-string can carry (visible ASCII, space, tab, non-ASCII).
values = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t"),
    max_size=30,
)
token68s = st.builds(
    lambda body, pad: body + "=" * pad,
    st.text(alphabet=TOKEN68_CHARS, min_size=1, max_size=20),
    st.integers(0, 2),
)


@st.composite
def challenge_lists(draw: st.DrawFn) -> list[Challenge]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        scheme = draw(tokens)
        if draw(st.booleans()):
            out.append(Challenge(scheme, token68=draw(token68s)))
        else:
            names = draw(st.lists(tokens, max_size=4, unique_by=str.lower))
            out.append(Challenge(scheme, {n: draw(values) for n in names}))
    return out


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def rendered(draw: st.DrawFn) -> tuple[list[Challenge], str]:
    challenges = draw(challenge_lists())
    ows = st.sampled_from(["", " ", "  ", "\t"])
    case = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
    parts = []
    for challenge in challenges:
        text = draw(case)(challenge.scheme)
        if challenge.token68 is not None:
            text += " " + draw(ows) + challenge.token68
        elif challenge.params:
            rendered_params = []
            for name, value in challenge.params.items():
                is_token = value and all(c in TCHARS for c in value)
                shown = value if is_token and draw(st.booleans()) else quote(value)
                rendered_params.append(draw(case)(name) + draw(ows) + "=" + draw(ows) + shown)
            separator = draw(ows) + "," + draw(ows)
            text += " " + draw(ows) + separator.join(rendered_params)
        parts.append(text)
    separator = draw(ows) + "," + draw(ows)
    return challenges, draw(ows) + separator.join(parts) + draw(ows)


@given(rendered())
def test_roundtrip(case: tuple[list[Challenge], str]) -> None:
    challenges, header = case
    assert parse_www_authenticate(header) == challenges


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_malformed(text: str) -> None:
    try:
        result = parse_www_authenticate(text)
    except MalformedChallenge:
        return
    assert isinstance(result, list)
    assert result
    assert all(isinstance(c, Challenge) for c in result)


@given(st.text(alphabet=TCHARS + ' ,="\\\t', max_size=60))
def test_grammar_shaped_text_parses_or_raises_malformed(text: str) -> None:
    with contextlib.suppress(MalformedChallenge):
        parse_www_authenticate(text)
