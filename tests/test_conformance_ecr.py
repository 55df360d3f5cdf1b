"""The ECR plugin passes the conformance suite against the ECR emulator."""

from __future__ import annotations

from ocync_conformance.suite import RegistryConformance


class TestEcr(RegistryConformance):
    plugins = ["ocync_ecr"]
    kind = "ecr"
    environment = "ecr"
    claimed_hosts = ("123456789012.dkr.ecr.us-east-1.amazonaws.com",)
