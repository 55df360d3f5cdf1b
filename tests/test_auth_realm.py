"""Where token realms may be: credentials stay on the registry's domain and off plain HTTP."""

from __future__ import annotations

import pytest

from ocync_core.auth import check_realm
from ocync_core.errors import AuthenticationError, CredentialPolicyError
from ocync_core.registry import RegistrySettings

HUB = RegistrySettings(host="registry-1.docker.io")
GHCR = RegistrySettings(host="ghcr.io")
GITLAB = RegistrySettings(host="registry.gitlab.com")
LOCAL = RegistrySettings(host="127.0.0.1:5000")


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        (HUB, "https://auth.docker.io/token"),
        (RegistrySettings(host="docker.io"), "https://auth.docker.io/token"),
        (GHCR, "https://ghcr.io/token"),
        (GITLAB, "https://gitlab.com/jwt/auth"),
        (RegistrySettings(host="myreg.azurecr.io"), "https://myreg.azurecr.io/oauth2/token"),
        (RegistrySettings(host="reg.example.com:8443"), "https://reg.example.com/service/token"),
        (RegistrySettings(host="reg.example.com"), "https://auth.example.com/token"),
        (LOCAL, "http://127.0.0.1:5001/auth"),
        (LOCAL, "http://localhost:5001/auth"),
        (RegistrySettings(host="[::1]:5000"), "http://[::1]:5001/auth"),
        (
            RegistrySettings(host="mirror", endpoint="https://proxy.corp.test"),
            "https://proxy.corp.test/t",
        ),
    ],
)
def test_allowed_with_credentials(registry: RegistrySettings, realm: str) -> None:
    url = check_realm(registry, realm, with_credentials=True)
    assert str(url) == realm


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        (HUB, "https://evil.com/token"),
        (HUB, "https://auth.docker.io.evil.com/token"),
        (GHCR, "https://evil.io/token"),  # ghcr.io's parent "io" is shared by everyone
        (RegistrySettings(host="reg.example.co.uk"), "https://evil.co.uk/t"),
        (RegistrySettings(host="app.herokuapp.com"), "https://evil.herokuapp.com/t"),
        (RegistrySettings(host="10.0.0.5:5000"), "https://10.0.0.6/t"),
        (RegistrySettings(host="reg.example.com"), "https://127.0.0.1/token"),
    ],
)
def test_foreign_domain_refused_with_credentials_allowed_anonymously(
    registry: RegistrySettings, realm: str
) -> None:
    with pytest.raises(CredentialPolicyError) as info:
        check_realm(registry, realm, with_credentials=True)
    message = str(info.value)
    assert registry.label in message
    assert realm in message
    assert info.value.exit_code == 4
    # Anonymous token requests carry nothing worth stealing.
    assert str(check_realm(registry, realm, with_credentials=False)) == realm


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        (HUB, "http://auth.docker.io/token"),
        (RegistrySettings(host="reg.example.com"), "http://reg.example.com/token"),
        (LOCAL, "http://10.1.1.1/token"),
    ],
)
def test_plain_http_to_non_loopback_refused_with_credentials(
    registry: RegistrySettings, realm: str
) -> None:
    with pytest.raises(CredentialPolicyError, match="plain HTTP"):
        check_realm(registry, realm, with_credentials=True)
    check_realm(registry, realm, with_credentials=False)


@pytest.mark.parametrize(
    "realm",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.170.2/v2/credentials",
        "http://[fd00:ec2::254]/latest/api/token",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./computeMetadata/v1/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
@pytest.mark.parametrize("with_credentials", [True, False])
def test_metadata_addresses_always_refused(realm: str, with_credentials: bool) -> None:
    registry = RegistrySettings(host="metadata.google.internal")  # even "same host"
    with pytest.raises(CredentialPolicyError, match="metadata"):
        check_realm(registry, realm, with_credentials=with_credentials)
    with pytest.raises(CredentialPolicyError):
        check_realm(HUB, realm, with_credentials=with_credentials)


@pytest.mark.parametrize(
    "realm",
    ["file:///etc/passwd", "ftp://auth.docker.io/token", "gopher://x/", "/token", "token"],
)
@pytest.mark.parametrize("with_credentials", [True, False])
def test_non_http_schemes_always_refused(realm: str, with_credentials: bool) -> None:
    with pytest.raises(CredentialPolicyError) as info:
        check_realm(HUB, realm, with_credentials=with_credentials)
    assert "registry-1.docker.io" in str(info.value)


def test_userinfo_in_realm_refused_without_echoing_it() -> None:
    with pytest.raises(AuthenticationError) as info:
        check_realm(HUB, "https://user:s3cret@auth.docker.io/token", with_credentials=False)
    assert "s3cret" not in str(info.value)
