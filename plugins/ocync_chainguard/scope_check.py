"""How the emulated ``cgr.dev`` decides that a token does not fit a request.

Chainguard issues tokens per scope set and refuses, with 403 rather than the usual 401, a
token used for a request whose scope set is another one: a token for another repository, and
equally a token with more actions than the request needs (``pull,push`` for a read). The
emulation compares the repository access a request needs, as a Distribution registry
derives it from the method and path, with the ``access`` claim of the Bearer JWT it carries.

Part of the conformance emulation: imported only by `ocync_chainguard.emulation`.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qs

from ocync_conformance.proxy import ProxyAction, RequestView, classify

__all__ = ["Access", "granted_access", "needed_access", "token_misfits"]

# Repository name -> actions.
Access = dict[str, frozenset[str]]

_PULL = frozenset({"pull"})
_PUSH = frozenset({"pull", "push"})
_READS = {
    ProxyAction.MANIFEST_HEAD: "/manifests/",
    ProxyAction.MANIFEST_GET: "/manifests/",
    ProxyAction.BLOB_HEAD: "/blobs/",
    ProxyAction.BLOB_GET: "/blobs/",
    ProxyAction.TAG_LIST: "/tags/",
    ProxyAction.REFERRERS: "/referrers/",
}
_WRITES = {
    ProxyAction.MANIFEST_PUT: "/manifests/",
    ProxyAction.UPLOAD_START: "/blobs/uploads",
    ProxyAction.UPLOAD_CHUNK: "/blobs/uploads",
    ProxyAction.UPLOAD_FINISH: "/blobs/uploads",
    ProxyAction.MOUNT: "/blobs/uploads",
}


def _repository(path: str, marker: str) -> str:
    return path.removeprefix("/v2/").rpartition(marker)[0]


def needed_access(method: str, target: str) -> Access | None:
    """The repository access a request needs; None for requests outside any repository."""
    action = classify(method, target)
    path, _, query = target.partition("?")
    if action in _READS:
        return {_repository(path, _READS[action]): _PULL}
    if action not in _WRITES:
        return None
    name = _repository(path, _WRITES[action])
    needed = {name: _PUSH}
    if action is ProxyAction.MOUNT:
        for source in parse_qs(query).get("from", []):
            needed[source] = needed.get(source, frozenset()) | _PULL
    return needed


def granted_access(authorization: str) -> Access | None:
    """The repository access a Bearer JWT grants; None without a readable Bearer token."""
    scheme, _, token = authorization.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    granted: Access = {}
    for entry in claims.get("access") or []:
        if isinstance(entry, dict) and entry.get("type") == "repository":
            name = str(entry.get("name", ""))
            granted[name] = granted.get(name, frozenset()) | frozenset(entry.get("actions", []))
    return granted


def token_misfits(request: RequestView) -> bool:
    """True when the request carries a token issued for another scope set than it needs.

    Anonymous and Basic requests are the registry's own business (it answers 401).
    """
    needed = needed_access(request.method, request.target)
    if needed is None:
        return False
    granted = granted_access(request.headers.get("authorization", ""))
    return granted is not None and granted != needed
