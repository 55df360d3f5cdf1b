"""The built-in Amazon ECR plugin (plugins/ocync_ecr), against moto's ECR control plane.

moto runs as a real HTTP server (``ThreadedMotoServer`` on port 0) and the SDK reaches it
through its standard ``AWS_ENDPOINT_URL_ECR`` variable: the plugin has no test-only path.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import ocync_ecr
from ocync_core.config._models import build_models
from ocync_core.digest import Digest
from ocync_core.errors import BadInput, RegistryError, RegistryErrorDetail
from ocync_core.plugins import Plugins
from ocync_core.policies import (
    Action,
    MountMode,
    PushOutcome,
    ThrottlePolicy,
    UploadMode,
)
from ocync_core.registry import RegistrySettings
from ocync_ecr import (
    THROTTLE_POLICY,
    BatchExistenceChecker,
    EcrApi,
    EcrAuth,
    EcrHost,
    EcrRegistryConfig,
    EcrRepositories,
    MissingRepository,
    missing_repository_hint,
    parse_ecr_host,
)
from ocync_ecr.auth import DEFAULT_LIFETIME, REFRESH_MARGIN

ACCOUNT = "123456789012"  # moto's default account
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An AWS environment that cannot see the machine's own config or credentials."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADEFAULTCHAIN0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "default-secret")
    return tmp_path


@pytest.fixture
def moto(aws_env: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's ECR, reset, reached through the SDK's standard endpoint override."""
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto_url)
    return moto_url


def settings(host: str = HOST, **options: Any) -> RegistrySettings:
    return RegistrySettings(host=host, options={"auth_type": "auto", **options})


def count_calls(api: EcrApi, operation: str) -> list[int]:
    """Count SDK calls of `operation` made through `api` (botocore's before-call event)."""
    calls: list[int] = []
    api.client().meta.events.register(f"before-call.ecr.{operation}", lambda **_: calls.append(1))
    return calls


def request(url: str = f"https://{HOST}/v2/") -> httpx.Request:
    return httpx.Request("GET", url)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (HOST, EcrHost(ACCOUNT, "us-east-1", False, "amazonaws.com")),
        (f"{HOST}:443", EcrHost(ACCOUNT, "us-east-1", False, "amazonaws.com")),
        (HOST.upper(), EcrHost(ACCOUNT, "us-east-1", False, "amazonaws.com")),
        (
            f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            EcrHost(ACCOUNT, "us-gov-west-1", True, "amazonaws.com"),
        ),
        (
            f"{ACCOUNT}.dkr.ecr-fips.us-east-2.amazonaws.com",
            EcrHost(ACCOUNT, "us-east-2", True, "amazonaws.com"),
        ),
        (
            f"{ACCOUNT}.dkr-ecr.eu-west-1.on.aws",
            EcrHost(ACCOUNT, "eu-west-1", False, "on.aws", dualstack=True),
        ),
        (
            f"{ACCOUNT}.dkr-ecr-fips.us-west-2.on.aws",
            EcrHost(ACCOUNT, "us-west-2", True, "on.aws", dualstack=True),
        ),
        (
            f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn",
            EcrHost(ACCOUNT, "cn-north-1", False, "amazonaws.com.cn"),
        ),
        (
            f"{ACCOUNT}.dkr.ecr.us-iso-east-1.c2s.ic.gov",
            EcrHost(ACCOUNT, "us-iso-east-1", False, "c2s.ic.gov"),
        ),
        (
            f"{ACCOUNT}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
            EcrHost(ACCOUNT, "us-isob-east-1", False, "sc2s.sgov.gov"),
        ),
        (
            f"{ACCOUNT}.dkr.ecr.ap-southeast-5.amazonaws.com",
            EcrHost(ACCOUNT, "ap-southeast-5", False, "amazonaws.com"),
        ),
    ],
)
def test_parse_ecr_host(host: str, expected: EcrHost) -> None:
    assert parse_ecr_host(host) == expected
    assert ocync_ecr.ocync_registry_kind(registry=RegistrySettings(host=host)) == "ecr"


@pytest.mark.parametrize(
    "host",
    [
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # 11 digits
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com",  # 13 digits
        "abcdefghijkl.dkr.ecr.us-east-1.amazonaws.com",
        f"{HOST}.evil.example",
        f"evil.{HOST}",
        f"{ACCOUNT}.dkr.ecr.us-east-1.on.aws",  # IPv4 label, dual-stack suffix
        f"{ACCOUNT}.dkr-ecr.us-east-1.amazonaws.com",  # dual-stack label, IPv4 suffix
        f"{ACCOUNT}.dkr.ecr.amazonaws.com",  # no region
        "ghcr.io",
        "127.0.0.1:5000",
    ],
)
def test_not_ecr_hosts(host: str) -> None:
    assert parse_ecr_host(host) is None
    assert ocync_ecr.ocync_registry_kind(registry=RegistrySettings(host=host)) is None


def test_plugin_loads_and_wins_kind_resolution() -> None:
    plugins = Plugins.load(allow=[], extra=[ocync_ecr])
    ecr = RegistrySettings(host=HOST)
    other = RegistrySettings(host="ghcr.io")
    assert plugins.kind_for(ecr) == "ecr"
    assert plugins.kind_for(other) == "oci"
    assert "ecr" in plugins.known_kinds()
    assert plugins.throttle_policy(ecr) is THROTTLE_POLICY
    assert plugins.throttle_policy(other) is not THROTTLE_POLICY
    assert plugins.upload_strategy(ecr).mode is UploadMode.POST_PUT
    assert plugins.mount_policy(ecr).mode is MountMode.WITH_FROM
    assert EcrRegistryConfig in plugins.registry_config_models()
    http = httpx.AsyncClient()
    assert isinstance(plugins.auth_provider(ecr, http), EcrAuth)
    assert not isinstance(plugins.auth_provider(other, http), EcrAuth)
    # Explicit credentials or auth_type basic: the standard provider does what was asked.
    basic = RegistrySettings(host=HOST, username="AWS", password="x")
    assert not isinstance(plugins.auth_provider(basic, http), EcrAuth)
    # An explicit kind: ecr on a host that is not ECR's (a VPC endpoint alias) is served too.
    explicit = RegistrySettings(host="ecr.internal.example", kind="ecr")
    assert plugins.throttle_policy(explicit) is THROTTLE_POLICY
    info = {p.name: p for p in plugins.describe()}["ocync_ecr"]
    assert info.kinds == ("ecr", "ecr-public")
    assert info.hosts


# -- configuration ----------------------------------------------------------------------------


def test_aws_profile_without_auth_type_ecr_in_settings() -> None:
    with pytest.raises(BadInput, match=r"^registry \S+: aws_profile needs auth_type: ecr"):
        EcrApi(settings(aws_profile="mirror"))


def test_config_keys_and_aws_profile_needs_auth_type_ecr() -> None:
    registry_model, _ = build_models(("oci", "ecr"), (EcrRegistryConfig,))
    ok = registry_model(url=HOST, auth_type="ecr", aws_profile="mirror", create_repositories=True)
    assert ok.aws_profile == "mirror"
    assert ok.repository_tag_mutability == "MUTABLE"
    assert ok.repository_encryption == "AES256"
    with pytest.raises(ValueError, match="aws_profile needs auth_type: ecr"):
        registry_model(url=HOST, aws_profile="mirror")
    with pytest.raises(ValueError, match="kms_key needs repository_encryption: KMS"):
        registry_model(url=HOST, kms_key="alias/x")
    with pytest.raises(ValueError):
        registry_model(url=HOST, repository_tag_mutability="SOMETIMES")
    kms = registry_model(url=HOST, repository_encryption="KMS", kms_key="alias/x")
    assert kms.kms_key == "alias/x"


# -- auth -------------------------------------------------------------------------------------


async def test_token_fetched_once_for_concurrent_requests(moto: str) -> None:
    auth = EcrAuth(settings())
    calls = count_calls(auth.api, "GetAuthorizationToken")
    requests = [request() for _ in range(20)]
    async with trio.open_nursery() as nursery:
        for req in requests:
            nursery.start_soon(auth.authorize, req, frozenset())
    assert len(calls) == 1
    # The header is the SDK's token itself: Basic base64("AWS:<password>").
    answer = await auth.api.call("GetAuthorizationToken")
    sdk_token = answer["authorizationData"][0]["authorizationToken"]
    assert base64.b64decode(sdk_token).decode().startswith("AWS:")
    assert {r.headers["Authorization"] for r in requests} == {f"Basic {sdk_token}"}
    # No /v2/token round trip: authorize() only ever talks to the SDK.


async def test_expires_at_in_the_past_does_not_refresh_every_request(
    moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = EcrAuth(settings())
    answer = await auth.api.call("GetAuthorizationToken")
    expires = answer["authorizationData"][0]["expiresAt"]
    assert expires < datetime.datetime.now(datetime.UTC)  # moto answers 2015
    calls = count_calls(auth.api, "GetAuthorizationToken")
    for _ in range(100):
        await auth.authorize(request(), frozenset())
    assert len(calls) == 1
    warnings = [r for r in caplog.records if "expiresAt" in r.getMessage()]
    assert len(warnings) == 1


async def test_challenged_refetches_exactly_once(moto: str) -> None:
    auth = EcrAuth(settings())
    calls = count_calls(auth.api, "GetAuthorizationToken")
    sent = [request() for _ in range(10)]
    for req in sent:
        await auth.authorize(req, frozenset())
    assert len(calls) == 1
    # Ten in-flight requests carrying the same token all come back 401.
    for req in sent:
        assert await auth.challenged(httpx.Response(401, request=req), frozenset()) is True
    retries = [request() for _ in range(10)]
    async with trio.open_nursery() as nursery:
        for req in retries:
            nursery.start_soon(auth.authorize, req, frozenset())
    assert len(calls) == 2
    assert all(r.headers["Authorization"].startswith("Basic ") for r in retries)


async def test_no_token_for_other_hosts_or_plain_http(moto: str) -> None:
    auth = EcrAuth(settings())
    s3 = request("https://prod-us-east-1-starport-layer-bucket.s3.amazonaws.com/blob")
    await auth.authorize(s3, frozenset())
    assert "Authorization" not in s3.headers
    # An emulator reached through `endpoint` on loopback is this registry too.
    local = EcrAuth(RegistrySettings(host=HOST, endpoint="http://127.0.0.1:5999"))
    req = request("http://127.0.0.1:5999/v2/")
    await local.authorize(req, frozenset())
    assert req.headers["Authorization"].startswith("Basic ")


class FakeApi:
    """A stand-in `EcrApi` answering GetAuthorizationToken with a chosen expiry."""

    def __init__(self, lifetime: datetime.timedelta, now: datetime.datetime) -> None:
        self.lifetime = lifetime
        self.now = now
        self.calls = 0

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        assert operation == "GetAuthorizationToken"
        self.calls += 1
        token = base64.b64encode(f"AWS:password-{self.calls}".encode()).decode()
        return {
            "authorizationData": [
                {"authorizationToken": token, "expiresAt": self.now + self.lifetime}
            ]
        }


@pytest.mark.parametrize(
    ("lifetime", "refresh_after"),
    [
        (datetime.timedelta(hours=12), 12 * 3600 - REFRESH_MARGIN),
        (datetime.timedelta(days=400), DEFAULT_LIFETIME - REFRESH_MARGIN),  # absurd
        (datetime.timedelta(hours=-3), DEFAULT_LIFETIME - REFRESH_MARGIN),  # past
    ],
)
async def test_refresh_is_scheduled_before_expiry(
    autojump_clock: trio.testing.MockClock, lifetime: datetime.timedelta, refresh_after: float
) -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    fake = FakeApi(lifetime, now)
    auth = EcrAuth(settings(), api=fake, clock=lambda: now)  # type: ignore[arg-type]
    await auth.authorize(request(), frozenset())
    await trio.sleep(refresh_after - 1)
    await auth.authorize(request(), frozenset())
    assert fake.calls == 1
    await trio.sleep(2)
    req = request()
    await auth.authorize(req, frozenset())
    assert fake.calls == 2
    assert base64.b64decode(req.headers["Authorization"].split()[1]) == b"AWS:password-2"


# -- credentials: aws_profile, FIPS -----------------------------------------------------------


async def test_aws_profile_scopes_one_registry(moto: str, aws_env: Path) -> None:
    (aws_env / "aws-credentials").write_text(
        "[mirror]\naws_access_key_id = AKIAPROFILEMIRROR000\naws_secret_access_key = s3cret\n"
    )
    default = EcrApi(settings())
    profiled = EcrApi(
        settings(
            f"{'2' * 12}.dkr.ecr.eu-west-1.amazonaws.com", aws_profile="mirror", auth_type="ecr"
        )
    )
    assert default.session().get_credentials().access_key == "AKIADEFAULTCHAIN0000"
    assert profiled.session().get_credentials().access_key == "AKIAPROFILEMIRROR000"
    assert profiled.client().meta.region_name == "eu-west-1"
    # Both fetch tokens from the (emulated) control plane with their own credentials.
    for api in (default, profiled):
        token = await EcrAuth(api.registry, api=api).token()
        assert base64.b64decode(token).startswith(b"AWS:")


async def test_unknown_aws_profile_is_a_clear_error(moto: str) -> None:
    auth = EcrAuth(settings(aws_profile="nope", auth_type="ecr"))
    with pytest.raises(Exception, match="aws_profile 'nope' is not defined"):
        await auth.authorize(request(), frozenset())


def test_fips_endpoint_from_environment(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ecr-fips" not in EcrApi(settings()).client().meta.endpoint_url
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    endpoint = EcrApi(settings()).client().meta.endpoint_url
    assert "ecr-fips.us-east-1" in endpoint


def test_fips_host_uses_fips_endpoint(aws_env: Path) -> None:
    api = EcrApi(settings(f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com"))
    assert "ecr-fips.us-gov-west-1" in api.client().meta.endpoint_url


def test_endpoint_override_is_the_sdk_standard(moto: str) -> None:
    assert EcrApi(settings()).client().meta.endpoint_url == moto


# -- existence checks -------------------------------------------------------------------------


def push_layer(api: EcrApi, repository: str, data: bytes) -> str:
    client = api.client()
    digest = digest_of(data)
    upload = client.initiate_layer_upload(repositoryName=repository)["uploadId"]
    client.upload_layer_part(
        repositoryName=repository,
        uploadId=upload,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    client.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest])
    return digest


async def test_existence_in_batches_of_100(moto: str) -> None:
    api = EcrApi(settings())
    api.client().create_repository(repositoryName="mirror/nginx")
    present = [push_layer(api, "mirror/nginx", f"layer {i}".encode()) for i in range(3)]
    absent = [digest_of(f"missing {i}".encode()) for i in range(247)]
    digests = [Digest.parse(d) for d in [*absent[:100], *present, *absent[100:]]]
    calls = count_calls(api, "BatchCheckLayerAvailability")
    checker = BatchExistenceChecker(api)
    result = await checker.exists("mirror/nginx", digests)
    assert len(calls) == 3
    assert list(result) == digests
    assert {str(d) for d, ok in result.items() if ok} == set(present)
    assert sum(result.values()) == 3


async def test_existence_of_missing_repository_is_all_false(moto: str) -> None:
    api = EcrApi(settings())
    digests = [Digest.parse(digest_of(b"x")), Digest.parse(digest_of(b"y"))]
    result = await BatchExistenceChecker(api).exists("no/such/repo", digests)
    assert result == dict.fromkeys(digests, False)


async def test_existence_checker_hook_uses_the_throttle(moto: str) -> None:
    from ocync_core.throttle import RegistryThrottle

    throttle = RegistryThrottle(THROTTLE_POLICY, 16)

    class Client:
        pass

    client = Client()
    client.throttle = throttle  # type: ignore[attr-defined]
    checker = ocync_ecr.ocync_existence_checker(registry=settings(), kind="ecr", client=client)
    assert isinstance(checker, BatchExistenceChecker)
    assert ocync_ecr.ocync_existence_checker(registry=settings(), kind="oci", client=client) is None
    await checker.exists("absent", [Digest.parse(digest_of(b"z"))])
    assert checker.calls == 1
    assert throttle.window("BatchCheckLayerAvailability").size >= 4


# -- throttle policy, mounts, uploads ---------------------------------------------------------


def test_throttle_policy_one_window_per_action() -> None:
    policy = ocync_ecr.ocync_throttle_policy(registry=settings(), kind="ecr")
    assert isinstance(policy, ThrottlePolicy)
    expected = {
        Action.UPLOAD_START: "InitiateLayerUpload",
        Action.MOUNT: "InitiateLayerUpload",
        Action.UPLOAD_CHUNK: "UploadLayerPart",
        Action.UPLOAD_FINISH: "CompleteLayerUpload",
        Action.MANIFEST_PUT: "PutImage",
        Action.MANIFEST_GET: "BatchGetImage",
        Action.MANIFEST_HEAD: "BatchGetImage",
        Action.BLOB_GET: "GetDownloadUrlForLayer",
        Action.BLOB_HEAD: "GetDownloadUrlForLayer",
        Action.BLOB_CHECK: "BatchCheckLayerAvailability",
        Action.TAG_LIST: "ListImages",
        Action.TOKEN: "GetAuthorizationToken",
    }
    for action, window in expected.items():
        assert policy.window_for(action) == window
    assert policy.window_for(Action.PING) == "other"
    rates = {name: spec.rate for name, spec in policy.windows.items()}
    assert rates["PutImage"] is not None and 9 <= rates["PutImage"] < 10
    assert rates["InitiateLayerUpload"] == 100
    assert rates["CompleteLayerUpload"] == 100
    assert rates["UploadLayerPart"] == 500
    assert rates["BatchCheckLayerAvailability"] == 1000
    assert rates["BatchGetImage"] == 2000
    assert rates["GetDownloadUrlForLayer"] == 3000
    assert rates["GetAuthorizationToken"] == 500
    assert rates["ListImages"]
    assert policy.windows["PutImage"].burst == 1
    assert set(expected.values()) <= set(policy.windows)


def test_mount_and_upload_policies() -> None:
    mount = ocync_ecr.ocync_mount_policy(registry=settings(), kind="ecr")
    assert mount.mode is MountMode.WITH_FROM
    assert 202 not in mount.not_mounted_statuses  # a 202 is an opened upload
    upload = ocync_ecr.ocync_upload_strategy(registry=settings(), kind="ecr")
    assert upload.mode is UploadMode.POST_PUT
    assert ocync_ecr.ocync_mount_policy(registry=settings(), kind="oci") is None


# -- immutable tags ---------------------------------------------------------------------------


def push_error(code: str, message: str) -> RegistryError:
    return RegistryError(
        400,
        "PUT",
        f"https://{HOST}/v2/mirror/nginx/manifests/1.27",
        errors=(RegistryErrorDetail(code, message),),
    )


def test_immutable_tag_is_a_skip() -> None:
    error = push_error(
        "TAG_INVALID",
        "The image tag '1.27' already exists in the 'mirror/nginx' repository and cannot be "
        "overwritten because the repository is immutable.",
    )
    outcome = ocync_ecr.ocync_manifest_push_outcome(
        registry=settings(), kind="ecr", error=error, wanted_digest=digest_of(b"m")
    )
    assert outcome == PushOutcome(skipped=True, reason="immutable tag exists")
    # Through the plugin manager too.
    plugins = Plugins.load(allow=[], extra=[ocync_ecr])
    assert plugins.manifest_push_outcome(settings(), error, digest_of(b"m")) == outcome
    # The generic plugin keeps the error for other registries.
    assert plugins.manifest_push_outcome(settings("ghcr.io"), error, digest_of(b"m")) is None


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("TAG_INVALID", "manifest tag did not match URI"),
        ("MANIFEST_INVALID", "manifest invalid"),
        ("DENIED", "not authorized"),
    ],
)
def test_other_push_errors_stand(code: str, message: str) -> None:
    outcome = ocync_ecr.ocync_manifest_push_outcome(
        registry=settings(), kind="ecr", error=push_error(code, message), wanted_digest="x"
    )
    assert outcome is None


# -- repositories -----------------------------------------------------------------------------


async def test_create_repositories(moto: str) -> None:
    registry = settings(
        create_repositories=True, repository_tag_mutability="IMMUTABLE", auth_type="ecr"
    )
    repos = ocync_ecr.REPOSITORY_PREPARER(registry)
    calls = count_calls(repos.api, "CreateRepository")
    assert await repos.ensure("mirror/nginx") is True
    assert await repos.ensure("mirror/nginx") is False
    assert len(calls) == 1
    # A fresh preparer (next run) finds it and creates nothing.
    again = EcrRepositories(registry)
    again_calls = count_calls(again.api, "CreateRepository")
    assert await again.ensure("mirror/nginx") is False
    assert again_calls == []
    described = repos.api.client().describe_repositories(repositoryNames=["mirror/nginx"])
    repo = described["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"


async def test_concurrent_ensure_creates_once(moto: str) -> None:
    repos = EcrRepositories(settings(create_repositories=True))
    calls = count_calls(repos.api, "CreateRepository")
    results: list[bool] = []

    async def ensure() -> None:
        results.append(await repos.ensure("team/app"))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(ensure)
    assert len(calls) == 1
    assert sorted(results) == [False] * 9 + [True]


async def test_missing_repository_without_create(moto: str) -> None:
    registry = settings()
    repos = EcrRepositories(registry)
    with pytest.raises(MissingRepository) as caught:
        await repos.ensure("mirror/nginx")
    assert str(caught.value) == missing_repository_hint(registry, "mirror/nginx")
    assert str(caught.value) == (
        f"repository mirror/nginx does not exist in ECR registry {HOST}; create it "
        "(ecr:CreateRepository) or set create_repositories: true"
    )


def test_config_keys_reach_registry_options() -> None:
    from ocync_core.config import parse_config

    plugins = Plugins.load(allow=[], extra=[ocync_ecr])
    entry = {"url": HOST, "auth_type": "ecr", "aws_profile": "mirror", "create_repositories": True}
    config = parse_config({"registries": {"ecr": entry}, "mappings": []}, plugins=plugins)
    registry = config.registries["ecr"]
    assert registry.options["aws_profile"] == "mirror"
    assert registry.options["create_repositories"] is True
    assert EcrApi(registry).profile == "mirror"
    with pytest.raises(BadInput, match="aws_profile needs auth_type: ecr"):
        parse_config(
            {"registries": {"ecr": {"url": HOST, "aws_profile": "x"}}, "mappings": []},
            plugins=plugins,
        )
