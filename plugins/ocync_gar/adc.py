"""Google access tokens from Application Default Credentials (the optional ``gcp`` extra).

google-auth is imported lazily: only a run that needs ADC pays for it, and a missing install is
an error naming the extra. ADC finds, in order, ``GOOGLE_APPLICATION_CREDENTIALS`` (a service
account key or any other credential file), the file ``gcloud auth application-default login``
writes, and the metadata server of GCE, GKE (Workload Identity) and Cloud Run. Access tokens
live about an hour; `AccessTokens` refreshes them before they expire, one refresh at a time, in
a worker thread (google-auth blocks).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from typing import Any

import trio

from ocync_core.errors import AuthenticationError, BadInput

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "EXTRA_HINT",
    "REFRESH_MARGIN",
    "AccessTokens",
    "MissingExtra",
    "application_default_credentials",
]

log = logging.getLogger("ocync.gar")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXTRA_HINT = "pip install 'ocync[gcp]'"
# Refresh this long before expiry (at most half the token's lifetime).
REFRESH_MARGIN = 300.0
# A token without an expiry (or with one in the past) is trusted for this long.
DEFAULT_LIFETIME = 600.0


class MissingExtra(BadInput):
    """An optional dependency is needed and not installed; the message names the extra."""


class AccessTokens:
    """OAuth2 access tokens of one set of google-auth credentials, refreshed before expiry.

    :param credentials: google-auth credentials (as `google.auth.default` returns them).
    :param request: a google-auth transport `Request`, used from a worker thread.
    :param clock: the wall clock (UTC, naive like google-auth's `expiry`); tests may replace it.
    """

    def __init__(
        self,
        credentials: Any,
        request: Any,
        *,
        label: str = "registry",
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._credentials = credentials
        self._request = request
        self._label = label
        self._clock = clock or _utcnow
        self._token: str | None = None
        self._refresh_at = 0.0  # trio clock
        self._lock = trio.Lock()
        self.refreshes = 0  # token refreshes made (tests, diagnostics)

    def __repr__(self) -> str:
        return f"AccessTokens({type(self._credentials).__name__}, {self._label!r})"

    async def token(self, *, force: bool = False) -> str:
        """The current access token, refreshed when due (or when `force`, after a refusal)."""
        refused = self._token
        if not force and self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            # Another waiter may have refreshed meanwhile: a refused token is replaced once,
            # whoever else saw it refused.
            if (force and self._token == refused) or not self._fresh():
                fetched_at = trio.current_time()
                self.refreshes += 1
                token, lifetime = await trio.to_thread.run_sync(
                    self._refresh, abandon_on_cancel=True
                )
                self._token = token
                self._refresh_at = fetched_at + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            assert self._token is not None
            return self._token

    def _fresh(self) -> bool:
        return self._token is not None and trio.current_time() < self._refresh_at

    def _refresh(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds (blocks: google-auth does HTTP)."""
        from google.auth.exceptions import GoogleAuthError

        try:
            self._credentials.refresh(self._request)
        except GoogleAuthError as exc:
            raise AuthenticationError(
                f"registry {self._label}: Google application-default credentials could not "
                f"issue an access token ({_first_line(exc)})"
            ) from None
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"registry {self._label}: Google application-default credentials issued no "
                "access token"
            )
        expiry = getattr(self._credentials, "expiry", None)
        if isinstance(expiry, datetime.datetime):
            remaining = (expiry - self._clock()).total_seconds()
            if remaining > 0:
                return token, remaining
        return token, DEFAULT_LIFETIME


def application_default_credentials(label: str, *, required: bool) -> AccessTokens | None:
    """ADC access tokens, or None when there are none (or google-auth is not installed).

    With `required` (``auth_type: gar``), a missing google-auth or missing credentials are
    errors that say how to fix them. Blocks (file reads, the metadata server probe): run it in
    a worker thread.
    """
    try:
        import google.auth
        import google.auth.transport.requests
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        if required:
            raise MissingExtra(
                f"registry {label}: Google application-default credentials need google-auth; "
                f"install the gcp extra: {EXTRA_HINT}"
            ) from None
        return None
    try:
        credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except DefaultCredentialsError as exc:
        if required:
            raise AuthenticationError(
                f"registry {label}: no Google application-default credentials "
                f"({_first_line(exc)}); run `gcloud auth application-default login`, set "
                "GOOGLE_APPLICATION_CREDENTIALS to a key file, or run on GCE/GKE with a "
                "service account"
            ) from None
        # A key file that was named but cannot be used is a mistake worth seeing.
        named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        level = logging.WARNING if named else logging.DEBUG
        log.log(
            level,
            "registry %s: no Google application-default credentials (%s)",
            label,
            _first_line(exc),
        )
        return None
    return AccessTokens(credentials, google.auth.transport.requests.Request(), label=label)


def _utcnow() -> datetime.datetime:
    # google-auth's `expiry` is a naive UTC datetime.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
