"""Credentials as a value that cannot leak through repr, str, logs or tracebacks."""

from __future__ import annotations

import base64
from dataclasses import dataclass

__all__ = ["Credentials"]


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and password, or an identity (refresh) token from `docker login`.

    `repr`/`str` show the username only: these objects end up in exception messages, debug
    logs and pytest assertion rewrites, none of which may ever contain a secret.
    """

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:
        token = ", identity_token=***" if self.identity_token else ""
        return f"Credentials(username={self.username!r}, password=***{token})"

    __str__ = __repr__

    @property
    def has_password(self) -> bool:
        """Whether Basic authentication is possible (an identity token alone is not enough)."""
        return bool(self.username or self.password)

    def basic_header(self) -> str:
        """The value of an `Authorization: Basic ...` header for these credentials."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """The secret strings, so error messages can be scrubbed of them."""
        return tuple(s for s in (self.password, self.identity_token) if s)
