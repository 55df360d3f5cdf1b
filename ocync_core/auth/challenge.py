"""`WWW-Authenticate` parsing per RFC 7235 §2.1 / §4.1.

The grammar, for reference::

    WWW-Authenticate = 1#challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )
    token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    quoted-string    = DQUOTE *( qdtext / quoted-pair ) DQUOTE

The one real ambiguity is the comma: it separates auth-params *and* challenges. After a
comma we look ahead: `token BWS "="` is another parameter, anything else starts a new
challenge. Regex parsers get this wrong as soon as a quoted `scope` contains a comma
(`scope="repository:a:pull,push"`), which every registry sends.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from ocync_core.errors import AuthenticationError

__all__ = ["Challenge", "MalformedChallenge", "parse_www_authenticate"]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHAR = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
# How much of a bad header an error message quotes: enough to recognise it, not a novel.
_QUOTE_LIMIT = 120


class MalformedChallenge(AuthenticationError):
    """A `WWW-Authenticate` header does not follow RFC 7235; the message quotes it."""

    def __init__(self, header: str, reason: str, position: int) -> None:
        self.header = header
        self.reason = reason
        self.position = position
        shown = header if len(header) <= _QUOTE_LIMIT else header[:_QUOTE_LIMIT] + "..."
        super().__init__(
            f"malformed WWW-Authenticate header {shown!r}: {reason} at character {position}"
        )


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: a scheme and its parameters (or a token68).

    Scheme and parameter names are case-insensitive in HTTP, so both are stored lowercased;
    parameter values keep their case (realms are URLs, scopes are repository names).
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def __post_init__(self) -> None:
        # Normalise here so hand-built challenges compare equal to parsed ones.
        object.__setattr__(self, "scheme", self.scheme.lower())
        lowered = {k.lower(): v for k, v in self.params.items()}
        object.__setattr__(self, "params", types.MappingProxyType(lowered))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Challenge):
            return NotImplemented
        return (self.scheme, dict(self.params), self.token68) == (
            other.scheme,
            dict(other.params),
            other.token68,
        )

    def __repr__(self) -> str:
        extra = f", token68={self.token68!r}" if self.token68 is not None else ""
        return f"Challenge({self.scheme!r}, {dict(self.params)!r}{extra})"

    def __hash__(self) -> int:
        return hash((self.scheme, frozenset(self.params.items()), self.token68))

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str) -> MalformedChallenge:
        return MalformedChallenge(self.text, reason, self.pos)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def skip_list_separators(self) -> None:
        # `#rule` lists allow empty elements: ", , Basic" is legal.
        while self.pos < len(self.text) and self.text[self.pos] in " \t,":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def try_token68(self) -> str | None:
        """A token68 only if it is the whole rest of this challenge; else rewind."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN68_CHAR:
            self.pos += 1
        if self.pos == start:
            return None
        while self.pos < len(self.text) and self.text[self.pos] == "=":
            self.pos += 1
        end = self.pos
        self.skip_ws()
        if self.at_end() or self.peek() == ",":
            return self.text[start:end]
        self.pos = start
        return None

    def quoted_string(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.fail("unterminated quoted string")
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                self.pos += 1
                if self.at_end():
                    raise self.fail("unterminated quoted string")
                ch = self.text[self.pos]
                if not _is_quotable(ch):
                    raise self.fail("control character in quoted string")
                out.append(ch)
                self.pos += 1
                continue
            if not _is_quotable(ch):
                raise self.fail("control character in quoted string")
            out.append(ch)
            self.pos += 1

    def bare_value(self) -> str:
        # RFC 7235 says `token`, but realms such as https://auth.example/token are sent
        # unquoted by some servers; accept any run of visible characters up to a separator.
        start = self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in ' \t,"\\' or not _is_quotable(ch):
                break
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a parameter value")
        return self.text[start : self.pos]

    def auth_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        while True:
            name_at = self.pos
            name = self.token()
            if not name:
                raise self.fail("expected a parameter name")
            self.skip_ws()
            if self.peek() != "=":
                raise self.fail(f"expected '=' after parameter {name!r}")
            self.pos += 1
            self.skip_ws()
            value = self.quoted_string() if self.peek() == '"' else self.bare_value()
            key = name.lower()
            if key in params:
                # RFC 7235: each name at most once. Two realms would be a guess at best.
                self.pos = name_at
                raise self.fail(f"parameter {key!r} given twice")
            params[key] = value
            self.skip_ws()
            if self.at_end():
                return params
            if self.peek() != ",":
                raise self.fail("expected ',' between parameters")
            comma = self.pos
            self.skip_list_separators()
            if self.at_end():
                return params
            # Look ahead: `name =` continues this challenge, anything else starts the next
            # (leave the comma for the caller, which separates challenges).
            mark = self.pos
            self.token()
            self.skip_ws()
            is_param = self.peek() == "="
            self.pos = mark
            if not is_param:
                self.pos = comma
                return params

    def challenges(self) -> list[Challenge]:
        found: list[Challenge] = []
        self.skip_list_separators()
        if self.at_end():
            raise self.fail("no challenge")
        while not self.at_end():
            scheme = self.token()
            if not scheme:
                raise self.fail("expected an authentication scheme")
            if not (self.at_end() or self.peek() in " \t,"):
                raise self.fail(f"unexpected character after scheme {scheme!r}")
            self.skip_ws()
            if self.at_end() or self.peek() == ",":
                found.append(Challenge(scheme))
            else:
                token68 = self.try_token68()
                if token68 is not None:
                    found.append(Challenge(scheme, token68=token68))
                else:
                    found.append(Challenge(scheme, self.auth_params()))
            self.skip_ws()
            if not self.at_end():
                if self.peek() != ",":
                    raise self.fail("expected ',' between challenges")
                self.skip_list_separators()
        return found


def _is_quotable(ch: str) -> bool:
    """HTAB, SP, VCHAR or obs-text: what may appear in (or be escaped inside) a quoted-string."""
    code = ord(ch)
    return ch == "\t" or 0x20 <= code <= 0x7E or code >= 0x80


def parse_www_authenticate(value: str) -> list[Challenge]:
    """Parse one `WWW-Authenticate` header value into its challenges, in order.

    Raises MalformedChallenge (an AuthenticationError) when the value breaks the grammar.
    Several header fields should be joined with ", " before parsing, as HTTP allows.
    """
    return _Parser(value).challenges()
