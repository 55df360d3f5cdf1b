"""The error hierarchy. Every error says what is wrong and where; none carries a credential.

Exit codes follow the CLI contract: 2 failure, 3 bad input, 4 authentication refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "EXIT_AUTH",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "REDACTED",
    "AuthenticationError",
    "BadInput",
    "ConfigError",
    "CredentialPolicyError",
    "DigestMismatch",
    "InvalidDigest",
    "InvalidReference",
    "ManifestError",
    "OcyncError",
    "RegistryError",
    "RegistryErrorDetail",
    "TransferError",
    "credential_forms",
    "leaf_errors",
    "redact_credentials",
    "single_errors",
]

EXIT_FAILURE = 2
EXIT_BAD_INPUT = 3
EXIT_AUTH = 4


class OcyncError(Exception):
    """Base of every error ocync raises on purpose."""

    exit_code: int = EXIT_FAILURE


class BadInput(OcyncError, ValueError):
    """The user gave something ocync cannot accept (reference, digest, config, flag)."""

    exit_code = EXIT_BAD_INPUT


class InvalidReference(BadInput):
    """A reference or repository name breaks the distribution/reference grammar."""


class InvalidDigest(BadInput):
    """A digest is not `algorithm:hex` with a supported algorithm and the right length."""


class ConfigError(BadInput):
    """A configuration file or value is invalid; the message names its path."""


class AuthenticationError(OcyncError):
    """The registry refused our credentials, or we refused to send them."""

    exit_code = EXIT_AUTH


class CredentialPolicyError(AuthenticationError):
    """Credentials would go somewhere they must not (foreign realm, plain HTTP)."""


class ManifestError(OcyncError):
    """A manifest is malformed, too large, or contradicts its descriptor."""


class TransferError(OcyncError):
    """Moving bytes failed for a reason that is not the registry's answer."""


class DigestMismatch(TransferError):
    """Content did not hash to the digest that names it; it is never pushed."""

    def __init__(self, expected: object, actual: object, what: str = "blob") -> None:
        self.expected = expected
        self.actual = actual
        self.what = what
        super().__init__(
            f"{what} {expected}: content does not match its digest (got {actual}); not pushed"
        )


@dataclass(frozen=True)
class RegistryErrorDetail:
    """One entry of the registry's `{"errors": [...]}` body."""

    code: str
    message: str
    detail: Any = None


class RegistryError(OcyncError):
    """A registry answered with an error status; carries its error codes and the request."""

    def __init__(
        self,
        status: int,
        method: str,
        url: str,
        errors: tuple[RegistryErrorDetail, ...] = (),
        body_excerpt: str = "",
        what: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.errors = errors
        self.body_excerpt = body_excerpt
        self.what = what
        self.retry_after: str | None = None  # the response's Retry-After header, if any
        super().__init__(self._message())

    @property
    def code(self) -> str | None:
        """The first error code the registry gave (e.g. MANIFEST_UNKNOWN), if any."""
        return self.errors[0].code if self.errors else None

    def has_code(self, code: str) -> bool:
        """Whether any of the registry's errors carries `code` (they can come several at once)."""
        return any(e.code == code for e in self.errors)

    def _message(self) -> str:
        head = f"{self.what}: " if self.what else ""
        where = f"{self.method} {self.url} -> {self.status}"
        if self.errors:
            said = "; ".join(f"{e.code}: {e.message}".rstrip(": ") for e in self.errors)
            return f"{head}{where} ({said})"
        if self.body_excerpt:
            return f"{head}{where} ({self.body_excerpt})"
        return f"{head}{where}"

    @classmethod
    def from_response(cls, response: httpx.Response, what: str = "") -> RegistryError:
        """Build the error from a response whose body has been read (or is empty)."""
        errors: tuple[RegistryErrorDetail, ...] = ()
        excerpt = ""
        try:
            body = response.content
        except httpx.ResponseNotRead:
            body = b""
        try:
            request: httpx.Request | None = response.request
        except RuntimeError:  # a response built without its request
            request = None
        # Some front ends and debug pages quote the request's headers in their error body.
        secrets = credential_forms(request)
        if body:
            try:
                doc = json.loads(body)
                raw = doc.get("errors", []) if isinstance(doc, dict) else []
                errors = tuple(
                    RegistryErrorDetail(
                        code=_shown(redact_credentials(str(e.get("code", "UNKNOWN")), secrets), 64),
                        message=_shown(redact_credentials(str(e.get("message", "")), secrets), 300),
                        detail=_redact_tree(e.get("detail"), secrets),
                    )
                    for e in raw[:_MAX_ERRORS_SHOWN]
                    if isinstance(e, dict)
                )
            except (ValueError, UnicodeDecodeError):
                pass
            if not errors:
                # Cut after redacting: a cut could leave a secret's prefix behind.
                text = body[:4096].decode("utf-8", "replace")
                excerpt = _shown(redact_credentials(text, secrets), 200).strip()
        url = request.url.copy_with(query=None) if request is not None else "?"
        method = request.method if request is not None else "?"
        refused = response.status_code == 401 or (
            response.status_code == 403 and not _speaks_of_limits(errors, excerpt)
        )
        error_cls = AuthRegistryError if refused else cls
        error = error_cls(response.status_code, method, str(url), errors, excerpt, what)
        error.retry_after = response.headers.get("Retry-After")
        return error


# Registries answer 403 for a full storage quota or a spent rate limit too (Harbor, GHCR and ACR
# say so in the message): that is no credential to fix, and no reason for exit code 4.
_LIMIT_WORDS = re.compile(r"quota|rate limit|too many requests|limit exceeded", re.IGNORECASE)


def _speaks_of_limits(errors: tuple[RegistryErrorDetail, ...], excerpt: str) -> bool:
    said = " ".join(f"{e.code} {e.message}" for e in errors) + " " + excerpt
    return "TOOMANYREQUESTS" in said or _LIMIT_WORDS.search(said) is not None


class AuthRegistryError(RegistryError, AuthenticationError):
    """The registry answered 401/403: the credentials (or their absence) were refused."""

    exit_code = EXIT_AUTH


REDACTED = "***"

# A registry's words reach terminals and logs: a few errors, each cut short, every control
# character escaped (a hostile registry could send megabytes, or terminal escape sequences).
_MAX_ERRORS_SHOWN = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(text: str, limit: int) -> str:
    cut = text if len(text) <= limit else text[:limit] + "…"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], cut)


def credential_forms(request: httpx.Request | None) -> tuple[str, ...]:
    """The credentials a request carried, in every form a server could quote them back:
    the header value, its credential part and, for Basic, the decoded pair and password."""
    header = request.headers.get("Authorization", "") if request is not None else ""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    forms = [header.strip(), value]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        forms += [decoded, decoded.partition(":")[2]]
    return tuple(form for form in forms if form)


def redact_credentials(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by ``***`` (longest first: one may contain another)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _redact_tree(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_credentials(value, secrets)
    if isinstance(value, dict):
        return {key: _redact_tree(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_tree(item, secrets) for item in value]
    return value


def leaf_errors(error: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, in order."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_errors(inner)]
    return [error]


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise an exception group of concurrent failures as its first ocync error.

    Nurseries wrap failures in groups; a caller of the API wants the error that says what
    went wrong, not a group. Cancellations and non-ocync errors stay grouped.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = leaf_errors(group)
        ours = [leaf for leaf in leaves if isinstance(leaf, OcyncError)]
        if ours and all(isinstance(leaf, Exception) for leaf in leaves):
            raise ours[0] from group
        raise
