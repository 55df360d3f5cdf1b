"""The generic plugin passes the conformance suite against docker-registry, in its four
auth/TLS variants."""

from __future__ import annotations

from ocync_conformance.suite import RegistryConformance


class TestOciOpen(RegistryConformance):
    plugins = ["ocync_oci"]
    environment = "open"


class TestOciBasic(RegistryConformance):
    plugins = ["ocync_oci"]
    environment = "basic"


class TestOciBearer(RegistryConformance):
    plugins = ["ocync_oci"]
    environment = "bearer"


class TestOciTls(RegistryConformance):
    plugins = ["ocync_oci"]
    environment = "tls"
