"""The generic plugin passes the conformance suite against docker-registry, in its four
auth/TLS variants."""

from __future__ import annotations

from ocync_conformance.suite import RegistryConformance


class TestOciOpen(RegistryConformance):
    plugins = ["ocync_oci"]
    claimed_hosts = ("registry.example.test:5000",)
    environment = "open"


class TestOciBasic(RegistryConformance):
    plugins = ["ocync_oci"]
    claimed_hosts = ("registry.example.test:5000",)
    environment = "basic"


class TestOciBearer(RegistryConformance):
    plugins = ["ocync_oci"]
    claimed_hosts = ("registry.example.test:5000",)
    environment = "bearer"


class TestOciTls(RegistryConformance):
    plugins = ["ocync_oci"]
    claimed_hosts = ("registry.example.test:5000",)
    environment = "tls"


class TestOciReferrers(RegistryConformance):
    plugins = ["ocync_oci"]
    claimed_hosts = ("registry.example.test:5000",)
    environment = "referrers"
