"""What fault tests check at a target registry, read from its storage and over its API.

`audit` finds every manifest the registry stores in any repository, tagged or not (from the
filesystem storage, so an untagged child pushed just before a crash is not missed), and checks
over HTTP that each one's blobs and child manifests are present in the same repository: the
invariant a mirror must keep whatever happens, "no manifest whose content is missing".
`tag_digests` reads what every tag resolves to, to compare a target with its source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import httpx

from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

__all__ = ["ACCEPT", "audit", "blob_present", "stored_manifests", "tag_digests"]

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def _repositories_root(registry: RegistryProcess) -> Path:
    return registry.storage_dir / "docker" / "registry" / "v2" / "repositories"


def stored_manifests(registry: RegistryProcess) -> dict[str, set[str]]:
    """Repository -> digests of every manifest revision the registry stores there."""
    root = _repositories_root(registry)
    found: dict[str, set[str]] = {}
    for revisions in root.glob("**/_manifests/revisions"):
        repository = revisions.parent.parent.relative_to(root).as_posix()
        digests = found.setdefault(repository, set())
        for link in revisions.glob("*/*/link"):
            digests.add(f"{link.parent.parent.name}:{link.parent.name}")
    return found


def blob_present(http: httpx.Client, repository: str, digest: str) -> bool:
    return http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200


def _named(doc: dict[str, object]) -> tuple[list[str], list[str]]:
    """(child manifests, blobs) a manifest or index names."""
    children = [str(d["digest"]) for d in doc.get("manifests", []) or []]  # type: ignore[union-attr]
    blobs = [str(d["digest"]) for d in doc.get("layers", []) or []]  # type: ignore[union-attr]
    config = doc.get("config")
    if isinstance(config, dict) and "digest" in config:
        blobs.append(str(config["digest"]))
    return children, blobs


def audit(registry: RegistryProcess) -> list[str]:
    """Every manifest at the registry whose blobs or children are not all there (empty: sound)."""
    problems: list[str] = []
    with registry.client() as http:
        for repository, digests in sorted(stored_manifests(registry).items()):
            for digest in sorted(digests):
                response = http.get(f"/v2/{repository}/manifests/{digest}", headers=ACCEPT)
                if response.status_code != 200:
                    problems.append(f"{repository}@{digest}: stored but unreadable")
                    continue
                children, blobs = _named(json.loads(response.content))
                for child in children:
                    got = http.head(f"/v2/{repository}/manifests/{child}", headers=ACCEPT)
                    if got.status_code != 200:
                        problems.append(f"{repository}@{digest} names missing manifest {child}")
                for blob in blobs:
                    if not blob_present(http, repository, blob):
                        problems.append(f"{repository}@{digest} names missing blob {blob}")
    return problems


def tag_digests(registry: RegistryProcess, repositories: Iterable[str]) -> dict[str, str]:
    """`repository:tag` -> manifest digest, for every tag of these repositories."""
    found: dict[str, str] = {}
    with registry.client() as http:
        for repository in repositories:
            listed = http.get(f"/v2/{repository}/tags/list")
            if listed.status_code == 404:
                continue
            listed.raise_for_status()
            for tag in listed.json().get("tags") or []:
                head = http.head(f"/v2/{repository}/manifests/{tag}", headers=ACCEPT)
                found[f"{repository}:{tag}"] = head.headers.get("Docker-Content-Digest", "")
    return found
