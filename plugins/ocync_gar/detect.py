"""Recognising Google Artifact Registry and Container Registry hosts.

Artifact Registry serves Docker repositories at ``<location>-docker.pkg.dev``, where the
location is a region (``europe-west1``) or a multi-region (``us``, ``europe``, ``asia``).
Container Registry's hosts, ``gcr.io`` and its regional ``<name>.gcr.io`` forms, are served by
Artifact Registry since GCR's shutdown and behave the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GarHost", "parse_gar_host"]

# A multi-region (`us`) or a region (`europe-west1`, `northamerica-northeast2`).
_LOCATION = r"[a-z]+(?:-[a-z]+[0-9]+)?"
_ARTIFACT_REGISTRY_RE = re.compile(rf"^(?P<location>{_LOCATION})-docker\.pkg\.dev$")
_CONTAINER_REGISTRY_RE = re.compile(r"^(?:(?P<prefix>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.)?gcr\.io$")


@dataclass(frozen=True)
class GarHost:
    """What a Google registry host says about itself: the location it serves."""

    location: str
    container_registry: bool


def _hostname(host: str) -> str:
    """Lower-case host without scheme, path, port or trailing dot."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def parse_gar_host(host: str) -> GarHost | None:
    """The location of an Artifact Registry or Container Registry host; None for any other.

    ``gcr.io`` is the ``us`` multi-region; ``eu.gcr.io``, ``us.gcr.io`` and ``asia.gcr.io`` name
    theirs; other ``<name>.gcr.io`` hosts (``marketplace.gcr.io``, ``mirror.gcr.io``) keep
    their name as the location.
    """
    name = _hostname(host)
    match = _ARTIFACT_REGISTRY_RE.match(name)
    if match is not None:
        return GarHost(match["location"], container_registry=False)
    match = _CONTAINER_REGISTRY_RE.match(name)
    if match is not None:
        prefix = match["prefix"] or "us"
        return GarHost("europe" if prefix == "eu" else prefix, container_registry=True)
    return None
