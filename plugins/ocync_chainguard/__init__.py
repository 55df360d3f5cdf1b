"""The Chainguard plugin (kind ``chainguard``): ``cgr.dev``.

cgr.dev issues Bearer tokens per scope set and refuses, with 403, a token used for any other
scope set: one issued for another repository, and one with more actions than the request
needs. A 403 is not a challenge, so a client that reuses tokens across scope sets cannot
recover by fetching a new one; it must never send a misfitting token in the first place.

The core's `StandardAuth` already works that way: its token cache is keyed by the exact
scope set of each request (pull on a repository read, pull and push on a write, plus pull on
the source of a mount; widened only by what the registry's own challenge asks for), and it
never lends a token to another key, not even one whose scopes cover the request. So the
plugin answers no auth hook: it claims ``cgr.dev`` (giving it a kind of its own, for the
configuration and the conformance kit) and brings the ``chainguard`` conformance environment,
which refuses misfitting tokens as cgr.dev does and so holds the core to that.

Public images (``cgr.dev/chainguard/*``) pull anonymously; an organisation's private images
need a pull token (username and password) or the Docker credential helper that
``chainctl auth configure-docker`` installs, both read by the standard auth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_chainguard.detect import CHAINGUARD_HOST, is_chainguard_host
from ocync_core import __version__
from ocync_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from ocync_core.registry import RegistrySettings

__all__ = ["KIND", "OCYNC_HOSTS", "OCYNC_KINDS", "__version__", "is_chainguard_host"]

KIND = "chainguard"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = (CHAINGUARD_HOST,)


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if is_chainguard_host(registry.host) else None


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # Imported only when the conformance kit asks: ocync itself never loads the kit.
    from ocync_chainguard.emulation import CHAINGUARD_ENVIRONMENTS

    return CHAINGUARD_ENVIRONMENTS
