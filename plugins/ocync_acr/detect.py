"""Recognising Azure Container Registry login servers, and the Azure cloud each belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AZURE_CLOUDS", "AcrHost", "AzureCloud", "parse_acr_host"]


@dataclass(frozen=True)
class AzureCloud:
    """One Azure cloud: its registry domain and the Microsoft Entra scope ACR accepts there."""

    name: str
    domain: str
    aad_scope: str


# The public cloud takes tokens for the ACR audience itself; the sovereign clouds the Azure
# Resource Manager audience of their cloud (the audiences the Azure SDKs use for them).
AZURE_CLOUDS: dict[str, AzureCloud] = {
    cloud.domain: cloud
    for cloud in (
        AzureCloud("AzureCloud", "azurecr.io", "https://containerregistry.azure.net/.default"),
        AzureCloud("AzureChinaCloud", "azurecr.cn", "https://management.chinacloudapi.cn/.default"),
        AzureCloud(
            "AzureUSGovernment", "azurecr.us", "https://management.usgovcloudapi.net/.default"
        ),
    )
}

# One DNS label before the domain: registry names are letters and digits, and login servers
# with a domain-name-label hash add `-<hash>`. Data endpoints (`<name>.<region>.data.azurecr.io`)
# have more labels: they serve blobs behind redirects, they are not registries.
_HOST_RE = re.compile(
    r"^(?P<name>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\."
    rf"(?P<domain>{'|'.join(re.escape(domain) for domain in AZURE_CLOUDS)})$"
)


@dataclass(frozen=True)
class AcrHost:
    """What an ACR login server says about itself."""

    name: str
    cloud: AzureCloud


def _hostname(host: str) -> str:
    """Lower-case host without scheme, port, path or trailing dot."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def parse_acr_host(host: str) -> AcrHost | None:
    """Parse `<name>.azurecr.io` (or `.azurecr.cn`, `.azurecr.us`); None for anything else."""
    match = _HOST_RE.match(_hostname(host))
    if match is None:
        return None
    return AcrHost(match["name"], AZURE_CLOUDS[match["domain"]])
