"""Recognising Amazon ECR registry hosts and reading account, region and partition from them."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ECR_PUBLIC_HOST", "EcrHost", "parse_ecr_host"]

ECR_PUBLIC_HOST = "public.ecr.aws"

# Endpoint suffixes of the AWS partitions. IPv4-only hosts use `dkr.ecr`, dual-stack hosts
# `dkr-ecr` (https://docs.aws.amazon.com/general/latest/gr/ecr.html).
_IPV4_SUFFIXES = (
    "amazonaws.com",  # aws, aws-us-gov
    "amazonaws.com.cn",  # aws-cn
    "c2s.ic.gov",  # aws-iso
    "sc2s.sgov.gov",  # aws-iso-b
    "cloud.adc-e.uk",  # aws-iso-e
    "csp.hci.ic.gov",  # aws-iso-f
)
_DUALSTACK_SUFFIXES = ("on.aws", "on.amazonwebservices.com.cn")


def _alternatives(suffixes: tuple[str, ...]) -> str:
    return "|".join(re.escape(s) for s in sorted(suffixes, key=len, reverse=True))


_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_HOST_RE = re.compile(
    rf"^(?P<account>\d{{12}})\."
    rf"(?:dkr\.ecr(?P<fips>-fips)?\.(?P<region>{_REGION})\.(?P<suffix>{_alternatives(_IPV4_SUFFIXES)})"
    rf"|dkr-ecr(?P<fips2>-fips)?\.(?P<region2>{_REGION})\.(?P<suffix2>{_alternatives(_DUALSTACK_SUFFIXES)}))$"
)


@dataclass(frozen=True)
class EcrHost:
    """What a private ECR registry host says about itself."""

    account: str
    region: str
    fips: bool
    partition_suffix: str
    dualstack: bool = False


def _hostname(host: str) -> str:
    """Lower-case host without scheme, port or trailing dot."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def parse_ecr_host(host: str) -> EcrHost | None:
    """Parse a private ECR host (`<account>.dkr.ecr[-fips].<region>.<suffix>` and the dual-stack
    `<account>.dkr-ecr[-fips].<region>.on.aws` forms); None for anything else."""
    match = _HOST_RE.match(_hostname(host))
    if match is None:
        return None
    if match["region"] is not None:
        return EcrHost(match["account"], match["region"], bool(match["fips"]), match["suffix"])
    return EcrHost(
        match["account"], match["region2"], bool(match["fips2"]), match["suffix2"], dualstack=True
    )


def is_ecr_public_host(host: str) -> bool:
    return _hostname(host) == ECR_PUBLIC_HOST
