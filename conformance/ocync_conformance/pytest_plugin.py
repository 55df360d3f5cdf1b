"""pytest plugin of the ocync conformance kit (entry point `pytest11`).

Kept import-light: registry fixtures live in `ocync_conformance.fixtures`, which itself imports
only pytest and the stdlib at module level (registries, certificates and JWT libraries are
imported when a fixture is first used), so installing ocync never slows down or breaks
unrelated pytest runs.
"""

from ocync_conformance.ecr_emulator import ecr_emulator
from ocync_conformance.fixtures import (
    SeededRegistry,
    _seeded_storage,
    basic_registry,
    oci_layout,
    registry,
    registry_binary,
    registry_pair,
    seeded_layout,
    seeded_registry,
    shared_registry,
    skopeo_binary,
    tls_certs,
    tls_registry,
    token_registry,
    token_server,
    token_signing_cert,
)
from ocync_conformance.proxy_fixtures import ProxiedRegistry, fault_proxy, proxied_registry

__all__ = [
    "ProxiedRegistry",
    "SeededRegistry",
    "_seeded_storage",
    "basic_registry",
    "ecr_emulator",
    "fault_proxy",
    "oci_layout",
    "proxied_registry",
    "registry",
    "registry_binary",
    "registry_pair",
    "seeded_layout",
    "seeded_registry",
    "shared_registry",
    "skopeo_binary",
    "tls_certs",
    "tls_registry",
    "token_registry",
    "token_server",
    "token_signing_cert",
]
