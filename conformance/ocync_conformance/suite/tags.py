"""Tag listing: every tag, exactly once, across as many pages as the registry serves."""

from __future__ import annotations

from ocync_conformance.environments import Target
from ocync_conformance.images import push_manifest
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.suite.base import SuiteBase, requires
from ocync_conformance.suite.manifests import image_manifest
from ocync_core import mediatypes
from ocync_core.client import RegistryClient

__all__ = ["TagChecks"]

TAG_COUNT = 12
PAGE_SIZE = 5


def _seed_tags(target: Target, repo: str) -> list[str]:
    """One tiny manifest under TAG_COUNT tags (cheap: one set of blobs, many PUTs)."""
    tags = [f"t{n:02d}" for n in range(TAG_COUNT)]
    with target.direct() as http:
        raw = image_manifest(http, repo)
        for tag in tags:
            push_manifest(http, repo, tag, raw, mediatypes.OCI_MANIFEST)
    return tags


def _difference(listed: list[str], tags: list[str]) -> str:
    missing = sorted(set(tags) - set(listed))
    extra = sorted(set(listed) - set(tags))
    repeated = sorted({t for t in listed if listed.count(t) > 1})
    return f"missing {missing}, unexpected {extra}, repeated {repeated}"


class TagChecks(SuiteBase):
    async def test_list_tags_returns_every_tag(
        self, client: RegistryClient, target: Target, repo: str
    ) -> None:
        tags = _seed_tags(target, repo)
        listed = await client.list_tags(repo)
        assert sorted(listed) == tags, (
            f"listing the tags of {repo} did not give the {len(tags)} tags pushed: "
            + _difference(listed, tags)
        )

    @requires("tag_pagination", "the registry does not page tag lists")
    async def test_list_tags_follows_pages(
        self, client: RegistryClient, target: Target, repo: str, proxy: FaultProxy
    ) -> None:
        tags = _seed_tags(target, repo)
        listed = await client.list_tags(repo, page_size=PAGE_SIZE)
        assert sorted(listed) == tags, (
            f"listing {len(tags)} tags of {repo} in pages of {PAGE_SIZE} went wrong: "
            + _difference(listed, tags)
        )
        proxy.wait_idle()
        pages = [r for r in proxy.log if r.action == "tag_list"]
        least = -(-TAG_COUNT // PAGE_SIZE)
        assert len(pages) != 1, (
            f"listing {len(tags)} tags with n={PAGE_SIZE} took one request: the registry "
            "ignores n= and answers with every tag at once (docker-registry 2.8 does), so "
            "it has no tag pagination to check; declare tag_pagination=False for it"
        )
        assert len(pages) >= least, (
            f"{len(tags)} tags in pages of {PAGE_SIZE} need at least {least} tag list requests; "
            f"the wire saw {len(pages)}: the registry's Link pagination was not followed "
            f"({[r.path for r in pages]})"
        )
        assert all(r.status == 200 for r in pages), (
            f"a tag list page failed: {[(r.path, r.status) for r in pages]}"
        )
