"""Project-wide fixtures; the registry fixtures come from the conformance kit's pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocync_conformance.registry_process import RegistryProcess


@pytest.fixture
def target_registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """A second open registry, distinct from the one `seeded_registry` uses."""
    with RegistryProcess(workdir=tmp_path_factory.mktemp("target")) as reg:
        yield reg
