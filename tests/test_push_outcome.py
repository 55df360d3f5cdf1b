"""A refused manifest push that a plugin reads as success is checked against the tag's digest."""

from __future__ import annotations

import pytest

from ocync_conformance.proxy import ProxyAction
from ocync_core import api
from ocync_core.errors import RegistryError
from ocync_core.hookspecs import hookimpl
from ocync_core.plugins import Plugins
from ocync_core.policies import PushOutcome
from ocync_core.registry import RegistrySettings

IMMUTABLE = "The image tag 'v1' already exists and cannot be overwritten (immutable)."


class _ImmutableTags:
    @hookimpl
    def ocync_manifest_push_outcome(
        self, registry: RegistrySettings, kind: str, error: RegistryError, wanted_digest: str
    ) -> PushOutcome | None:
        if error.code == "TAG_INVALID":
            return PushOutcome(skipped=True, reason="immutable tag already holds the digest")
        return None


@pytest.fixture
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_oci"], extra=[_ImmutableTags()])


async def test_refused_push_of_the_same_digest_is_a_skip(
    seeded_registry, target_registry, fault_proxy, plugins
):
    source = f"{seeded_registry.host}/demo/app:v1"
    first = await api.copy(source, f"{target_registry.host}/app:v1", plugins=plugins)
    assert first.status == "copied"
    proxy = fault_proxy(target_registry)
    # The tag looks absent to the first HEAD, and the push is refused as ECR does.
    proxy.fail([ProxyAction.MANIFEST_HEAD], status=404, count=1, path="/manifests/v1")
    proxy.fail(
        [ProxyAction.MANIFEST_PUT],
        status=400,
        count=1,
        path="/manifests/v1",
        code="TAG_INVALID",
        message=IMMUTABLE,
    )
    again = await api.copy(source, f"{proxy.host}/app:v1", plugins=plugins)
    assert again.status == "skipped"
    assert "immutable" in again.reason


async def test_refused_push_of_another_digest_stays_an_error(
    seeded_registry, target_registry, fault_proxy, plugins
):
    from ocync_conformance.corpus import build_corpus

    held = build_corpus(repositories=1, tags=1, prefix="held")  # another image under the tag
    held.push(target_registry.url)
    assert held.images[0].digest != seeded_registry.digest
    proxy = fault_proxy(target_registry)
    proxy.fail(
        [ProxyAction.MANIFEST_PUT],
        status=400,
        path="/manifests/1.0.0",
        code="TAG_INVALID",
        message=IMMUTABLE,
    )
    with pytest.raises(RegistryError) as caught:
        await api.copy(
            f"{seeded_registry.host}/demo/app:v1",
            f"{proxy.host}/held/app00:1.0.0",
            plugins=plugins,
        )
    assert caught.value.code == "TAG_INVALID"
