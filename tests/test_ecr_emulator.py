"""The ECR emulator (conformance kit): moto control plane + docker-registry data plane agree."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from ocync_conformance.ecr_emulator import EcrEmulator

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def ecr(ecr_emulator: EcrEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A boto3 ECR client configured only through the environment (as the plugin is)."""
    import boto3

    for k, v in ecr_emulator.env().items():
        monkeypatch.setenv(k, v)
    yield boto3.client("ecr")


def _client(emu: EcrEmulator, ecr: object) -> httpx.Client:
    data = ecr.get_authorization_token()["authorizationData"][0]  # type: ignore[attr-defined]
    return httpx.Client(
        base_url=emu.endpoint, headers={"Authorization": f"Basic {data['authorizationToken']}"}
    )


def _push_blob(cl: httpx.Client, repo: str, blob: bytes) -> str:
    d = _digest(blob)
    r = cl.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = r.headers["location"]
    sep = "&" if "?" in loc else "?"
    r = cl.put(f"{loc}{sep}digest={d}", content=blob)
    assert r.status_code == 201, r.text
    return d


def _manifest(cl: httpx.Client, repo: str, layer: bytes = b"layer") -> bytes:
    cfg = b'{"architecture":"amd64","os":"linux"}'
    cd = _push_blob(cl, repo, cfg)
    ld = _push_blob(cl, repo, layer)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cd,
                "size": len(cfg),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": 5}
            ],
        }
    ).encode()


def _put_manifest(cl: httpx.Client, repo: str, tag: str, body: bytes) -> httpx.Response:
    return cl.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )


def test_token_works_as_basic_and_expires_sanely(ecr_emulator: EcrEmulator, ecr: object) -> None:
    data = ecr.get_authorization_token()["authorizationData"][0]  # type: ignore[attr-defined]
    user, _, pw = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert (user, pw) == ("AWS", ecr_emulator.password)
    assert data["proxyEndpoint"] == f"https://{ecr_emulator.host}"
    assert data["expiresAt"].timestamp() > time.time() + 11 * 3600
    assert ecr_emulator.api_calls["GetAuthorizationToken"] == 1
    with _client(ecr_emulator, ecr) as cl:
        assert cl.get("/v2/").status_code == 200
    with httpx.Client(base_url=ecr_emulator.endpoint) as anon:
        r = anon.get("/v2/")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic ")
    assert ecr_emulator.data_log[0].auth_scheme == "Basic"


def test_rotation_invalidates_old_password(ecr_emulator: EcrEmulator, ecr: object) -> None:
    old = _client(ecr_emulator, ecr)
    assert old.get("/v2/").status_code == 200
    ecr_emulator.rotate_token()
    assert old.get("/v2/").status_code == 401
    with _client(ecr_emulator, ecr) as new:
        assert new.get("/v2/").status_code == 200
    old.close()
    assert ecr_emulator.api_calls["GetAuthorizationToken"] == 2


def test_batch_check_reflects_registry(ecr_emulator: EcrEmulator, ecr: object) -> None:
    ecr_emulator.create_repository("app")
    missing = _digest(b"never pushed")
    with _client(ecr_emulator, ecr) as cl:
        d = _push_blob(cl, "app", b"some layer")
    out = ecr.batch_check_layer_availability(  # type: ignore[attr-defined]
        repositoryName="app", layerDigests=[d, missing]
    )
    assert out["layers"] == [
        {"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": len(b"some layer")}
    ]
    assert [(f["layerDigest"], f["failureCode"]) for f in out["failures"]] == [
        (missing, "MissingLayerDigest")
    ]
    assert ecr_emulator.api_calls["BatchCheckLayerAvailability"] == 1
    with pytest.raises(Exception, match="InvalidParameter"):
        ecr.batch_check_layer_availability(  # type: ignore[attr-defined]
            repositoryName="app", layerDigests=[_digest(bytes([i])) for i in range(101)]
        )


def test_unknown_repository_is_name_unknown(ecr_emulator: EcrEmulator, ecr: object) -> None:
    with _client(ecr_emulator, ecr) as cl:
        r = cl.post("/v2/nope/blobs/uploads/")
        assert r.status_code == 404
        err = r.json()["errors"][0]
        assert err["code"] == "NAME_UNKNOWN"
        assert "'nope'" in err["message"] and ecr_emulator.account_id in err["message"]
        r = _put_manifest(cl, "nope", "v1", b"{}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_immutable_overwrite_is_tag_invalid(ecr_emulator: EcrEmulator, ecr: object) -> None:
    ecr_emulator.create_repository("frozen", immutable=True)
    with _client(ecr_emulator, ecr) as cl:
        first = _manifest(cl, "frozen", b"one")
        assert _put_manifest(cl, "frozen", "v1", first).status_code == 201
        for body in (first, _manifest(cl, "frozen", b"two")):
            r = _put_manifest(cl, "frozen", "v1", body)
            assert r.status_code == 400
            err = r.json()["errors"][0]
            assert err["code"] == "TAG_INVALID"
            assert "'v1'" in err["message"] and "immutable" in err["message"]
        # another tag is fine
        assert _put_manifest(cl, "frozen", "v2", first).status_code == 201


def test_mutable_overwrite_allowed(ecr_emulator: EcrEmulator, ecr: object) -> None:
    ecr_emulator.create_repository("app")
    with _client(ecr_emulator, ecr) as cl:
        assert _put_manifest(cl, "app", "v1", _manifest(cl, "app", b"one")).status_code == 201
        second = _manifest(cl, "app", b"two")
        assert _put_manifest(cl, "app", "v1", second).status_code == 201
    images = ecr.describe_images(repositoryName="app")["imageDetails"]  # type: ignore[attr-defined]
    tagged = [i["imageDigest"] for i in images if i.get("imageTags") == ["v1"]]
    assert tagged == [_digest(second)]
    assert ecr_emulator.mirror_errors == []


@pytest.mark.parametrize("enabled", [False, True])
def test_blob_mounting(ecr_emulator: EcrEmulator, ecr: object, enabled: bool) -> None:
    ecr_emulator.create_repository("src")
    ecr_emulator.create_repository("dst")
    ecr_emulator.set_blob_mounting(enabled)
    with _client(ecr_emulator, ecr) as cl:
        d = _push_blob(cl, "src", b"shared layer")
        r = cl.post(f"/v2/dst/blobs/uploads/?mount={d}&from=src")
        assert r.status_code == (201 if enabled else 202), r.text
        if not enabled:  # a normal upload session was opened: finish it
            loc = r.headers["location"]
            assert "mount" not in loc
            sep = "&" if "?" in loc else "?"
            assert cl.put(f"{loc}{sep}digest={d}", content=b"shared layer").status_code == 201
    assert ecr_emulator.data_count("mount") == 1


def test_account_setting_blob_mounting(ecr_emulator: EcrEmulator, ecr: object) -> None:
    out = ecr.get_account_setting(name="BLOB_MOUNTING")  # type: ignore[attr-defined]
    assert out["value"] == "DISABLED"
    ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")  # type: ignore[attr-defined]
    assert ecr_emulator.blob_mounting


def test_manifest_mirrored_into_describe_images(ecr_emulator: EcrEmulator, ecr: object) -> None:
    ecr_emulator.create_repository("app")
    with _client(ecr_emulator, ecr) as cl:
        body = _manifest(cl, "app")
        r = _put_manifest(cl, "app", "v1", body)
        assert r.status_code == 201
        assert r.headers["docker-content-digest"] == _digest(body)
        r = cl.put(
            f"/v2/app/manifests/{_digest(body)}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201
    images = ecr.describe_images(repositoryName="app")["imageDetails"]  # type: ignore[attr-defined]
    assert [(i["imageDigest"], i.get("imageTags")) for i in images] == [(_digest(body), ["v1"])]
    assert ecr_emulator.mirror_errors == []


def test_throttle_gives_429_over_rate(ecr_emulator: EcrEmulator, ecr: object) -> None:
    ecr_emulator.create_repository("app")
    ecr_emulator.throttle("BatchGetImage", 5)
    with _client(ecr_emulator, ecr) as cl:
        statuses = [cl.head("/v2/app/manifests/none").status_code for _ in range(12)]
        assert statuses.count(429) >= 6
        assert set(statuses) == {404, 429}
        r = cl.get("/v2/app/manifests/none")
        if r.status_code == 429:
            assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        # other actions are not throttled
        assert cl.get("/v2/").status_code == 200
        time.sleep(1.1)
        assert cl.head("/v2/app/manifests/none").status_code == 404
    assert ecr_emulator.data_count("BatchGetImage", 429) == ecr_emulator.throttled["BatchGetImage"]


def test_control_plane_throttle(ecr_emulator: EcrEmulator) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    env = ecr_emulator.env()
    c = boto3.client(
        "ecr",
        endpoint_url=env["AWS_ENDPOINT_URL_ECR"],
        region_name=ecr_emulator.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    # Unthrottled first: botocore's first call loads its models and connects, which on a busy
    # machine can take longer than the second a bucket of 1 needs to refill.
    c.get_authorization_token()
    ecr_emulator.throttle("GetAuthorizationToken", 1)
    c.get_authorization_token()  # the bucket's one token
    refusals = []
    for _ in range(3):  # a burst: one of these comes within the second, whatever the machine
        try:
            c.get_authorization_token()
        except ClientError as error:
            refusals.append(error.response["Error"]["Code"])
            break
    assert refusals == ["ThrottlingException"]


def test_token_endpoint_is_404_and_counted(ecr_emulator: EcrEmulator, ecr: object) -> None:
    with _client(ecr_emulator, ecr) as cl:
        assert cl.get("/v2/token", params={"scope": "repository:app:pull"}).status_code == 404
    assert ecr_emulator.data_count("Token") == 1


def test_forwards_other_calls_and_sts(ecr_emulator: EcrEmulator, ecr: object) -> None:
    import boto3

    ecr.create_repository(repositoryName="made-by-sdk")  # type: ignore[attr-defined]
    names = [
        r["repositoryName"]
        for r in ecr.describe_repositories()["repositories"]  # type: ignore[attr-defined]
    ]
    assert "made-by-sdk" in names
    role = "arn:aws:iam::123456789012:role/target"
    creds = boto3.client("sts").assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    assert creds["AccessKeyId"]
    assert ecr_emulator.api_calls["CreateRepository"] == 1
    assert ecr_emulator.api_calls["AssumeRole"] == 1
