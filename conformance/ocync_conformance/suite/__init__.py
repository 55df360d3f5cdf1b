"""The conformance suite: every check a registry plugin must pass, as one class to subclass.

In a plugin's own tests::

    from ocync_conformance.capabilities import Capabilities
    from ocync_conformance.suite import RegistryConformance

    class TestMyRegistry(RegistryConformance):
        plugins = ["my-registry"]         # the plugin's entry-point name
        kind = "my-registry"              # the kind it answers for
        environment = "my-fake-registry"  # a built-in environment, or one the plugin brings
        capabilities = Capabilities(mount=False, max_chunk=4 * 1024 * 1024)

Each group of checks is a mixin of its own module; a check that needs a capability the
registry lacks is skipped with the reason.
"""

from __future__ import annotations

from ocync_conformance.suite.auth import AuthChecks
from ocync_conformance.suite.detection import DetectionChecks
from ocync_conformance.suite.existence import ExistenceChecks
from ocync_conformance.suite.manifests import ManifestChecks
from ocync_conformance.suite.model import ModelChecks
from ocync_conformance.suite.mounts import MountChecks
from ocync_conformance.suite.referrers import ReferrerChecks
from ocync_conformance.suite.roundtrip import SyncChecks
from ocync_conformance.suite.tags import TagChecks
from ocync_conformance.suite.throttling import ThrottleChecks
from ocync_conformance.suite.uploads import UploadChecks

__all__ = ["GROUPS", "RegistryConformance"]

GROUPS = (
    DetectionChecks,
    AuthChecks,
    ExistenceChecks,
    MountChecks,
    UploadChecks,
    ManifestChecks,
    TagChecks,
    ReferrerChecks,
    ThrottleChecks,
    SyncChecks,
    ModelChecks,
)


class RegistryConformance(*GROUPS):  # type: ignore[misc]
    """Every check of the suite. Subclass it as ``Test...`` and configure the class."""
