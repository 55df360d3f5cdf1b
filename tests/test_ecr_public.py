"""ECR Public: the standard token exchange, with ecr-public credentials or anonymously.

public.ecr.aws is emulated by a real docker-registry with Bearer token auth (the kit's token
server, user `AWS`). The ecr-public API cannot run here and moto has no ecr-public service, so
GetAuthorizationToken is answered by botocore's Stubber: the one mock in this file.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from ocync_conformance.images import ChallengeAuth, push_image
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core import api
from ocync_core.errors import AuthenticationError
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings
from ocync_ecr.public import EcrPublicAuth

PASSWORD = "ecr-public-password"


@pytest.fixture
def public_registry(token_signing_cert, oci_layout, tmp_path) -> Iterator[RegistryProcess]:
    server = TokenServer(users={"AWS": PASSWORD}, signing=token_signing_cert)
    with server, RegistryProcess(token_server=server, workdir=tmp_path / "public") as registry:
        with registry.client(auth=ChallengeAuth("AWS", PASSWORD)) as http:
            push_image(http, "team/tool", oci_layout, tag="v1")
        server.reset_requests()
        yield registry


def _stubbed(response: dict | None = None, error: str | None = None):
    client = boto3.client(
        "ecr-public", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(client)
    if error:
        stub.add_client_error("get_authorization_token", service_error_code=error)
    else:
        stub.add_response("get_authorization_token", response or {}, {})
    stub.activate()
    return client


def _token(password: str) -> dict:
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=12)
    return {"authorizationData": {"authorizationToken": token, "expiresAt": expires}}


def _public(registry: RegistryProcess) -> RegistrySettings:
    return RegistrySettings(host="public.ecr.aws", endpoint=registry.url)


def test_public_ecr_is_its_own_kind() -> None:
    plugins = Plugins.load()
    public = RegistrySettings(host="public.ecr.aws")
    assert plugins.kind_for(public) == "ecr-public"
    # Only auth differs: the rest is a standard registry.
    generic = RegistrySettings(host="registry.example.com")
    assert plugins.upload_strategy(public) == plugins.upload_strategy(generic)
    assert plugins.throttle_policy(public) == plugins.throttle_policy(generic)


async def test_ecr_public_token_is_used_for_the_exchange(
    public_registry, target_registry, monkeypatch
):
    client = _stubbed(_token(PASSWORD))
    monkeypatch.setattr(EcrPublicAuth, "_default_client", lambda self: client)
    result = await api.copy(
        "public.ecr.aws/team/tool:v1",
        f"{target_registry.host}/mirror/tool:v1",
        source_settings=_public(public_registry),
    )
    assert result.status == "copied"
    users = {r.user for r in public_registry.token_server.requests}
    assert users == {"AWS"}  # every token was fetched with the ecr-public credentials


async def test_no_aws_credentials_pulls_anonymously(
    public_registry, target_registry, monkeypatch, tmp_path
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = await api.copy(
        "public.ecr.aws/team/tool:v1",
        f"{target_registry.host}/anon/tool:v1",
        source_settings=_public(public_registry),
    )
    assert result.status == "copied"
    assert {r.user for r in public_registry.token_server.requests} == {None}


async def test_refused_token_is_an_authentication_error(
    public_registry, target_registry, monkeypatch
):
    client = _stubbed(error="AccessDeniedException")
    monkeypatch.setattr(EcrPublicAuth, "_default_client", lambda self: client)
    with pytest.raises(AuthenticationError, match="ecr-public:GetAuthorizationToken"):
        await api.copy(
            "public.ecr.aws/team/tool:v1",
            f"{target_registry.host}/x/tool:v1",
            source_settings=_public(public_registry),
        )
