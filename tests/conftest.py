"""Project-wide fixtures; the registry fixtures come from the conformance kit's pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocync_conformance.registry_process import RegistryProcess

# pytester runs the conformance suite on deliberately broken plugins (test_conformance_broken).
pytest_plugins = ["pytester"]
# The sample plugin's own tests run in the fresh venv of test_conformance_thirdparty, where
# ocync-tiny is installed; here, without it, they could only fail.
collect_ignore = ["fixtures"]


@pytest.fixture
def target_registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """A second open registry, distinct from the one `seeded_registry` uses."""
    with RegistryProcess(workdir=tmp_path_factory.mktemp("target")) as reg:
        yield reg
