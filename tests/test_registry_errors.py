"""How a registry's error answer is read: which refusals are about credentials (exit code 4)
and which are about limits, whatever status the registry chose for them."""

from __future__ import annotations

import httpx
import pytest

from ocync_core.errors import EXIT_AUTH, AuthenticationError, RegistryError


def _answer(status: int, code: str, message: str) -> RegistryError:
    response = httpx.Response(
        status,
        json={"errors": [{"code": code, "message": message}]},
        request=httpx.Request("PUT", "https://r.example/v2/team/app/manifests/1.0"),
    )
    return RegistryError.from_response(response, what="PUT manifest team/app:1.0")


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (401, "UNAUTHORIZED", "authentication required"),
        (403, "DENIED", "requested access to the resource is denied"),
        (403, "DENIED", "insufficient_scope: authorization failed"),
    ],
)
def test_credential_refusals_are_authentication_errors(status: int, code: str, message: str):
    error = _answer(status, code, message)
    assert isinstance(error, AuthenticationError)
    assert error.exit_code == EXIT_AUTH


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("DENIED", "Quota exceeded when processing the request of adding 1.2 MiB of storage"),
        ("DENIED", "storage quota exceeded for namespace mirror"),
        ("TOOMANYREQUESTS", "you have reached your pull rate limit"),
        ("DENIED", "rate limit exceeded, retry later"),
    ],
)
def test_a_403_about_limits_is_no_authentication_error(code: str, message: str):
    error = _answer(403, code, message)
    assert not isinstance(error, AuthenticationError)
    assert error.status == 403 and error.has_code(code)
    assert message[:40] in str(error)
