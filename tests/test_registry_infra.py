"""The test infrastructure itself, proven over real HTTP against real docker-registry processes.

If these fail, every higher-level test is suspect; so they check the behaviour the rest of
the suite relies on (auth challenges, token flow, TLS trust, digest-preserving seeding).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import socket
import ssl
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ocync_conformance.certs import SigningCert
from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME, SeededRegistry
from ocync_conformance.images import (
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    ChallengeAuth,
    LayoutImage,
    build_image_layout,
    build_single_image_layout,
    head_manifest_digest,
    push_blob,
    push_image,
    push_manifest,
    seed_registry,
    sha256_digest,
)
from ocync_conformance.registry_process import RegistryProcess, RegistryStartError
from ocync_conformance.tokenserver import Scope, TokenServer, parse_scope


@pytest.fixture(scope="module")
def plain() -> Iterator[httpx.Client]:
    # One client for plain-http calls to token servers: httpx.get() would build a fresh
    # certifi-loaded SSL context per call (~50-100 ms each), dominating these tests' runtime.
    with httpx.Client(verify=False, timeout=10.0) as c:
        yield c


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _challenge_params(header: str) -> dict[str, str]:
    # Quoted values contain commas ("pull,push"): no naive split.
    return dict(re.findall(r'(\w+)="([^"]*)"', header.partition(" ")[2]))


# -- open registry ----------------------------------------------------------------------------


def test_open_registry_blob_push_pull(registry: RegistryProcess) -> None:
    assert registry.host.startswith("127.0.0.1:")
    assert registry.url == f"http://{registry.host}"
    assert registry.auth == "none" and registry.ca_file is None
    data = os.urandom(10_000)
    with registry.client() as c:
        digest = push_blob(c, "infra/blob", data)
        assert digest == sha256_digest(data)
        head = c.head(f"/v2/infra/blob/blobs/{digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(data)
        got = c.get(f"/v2/infra/blob/blobs/{digest}", follow_redirects=True)
        assert got.status_code == 200 and got.content == data
    # Filesystem storage really is in our temp dir, not in /var/lib/docker-registry.
    assert (registry.storage_dir / "docker/registry/v2/blobs/sha256" / digest[7:9]).is_dir()


def test_docker_registry_upload_quirks(registry: RegistryProcess) -> None:
    """Quirks the push helpers work around (docker-registry 2.8.2, measured)."""
    with registry.client() as c:
        # A body on the POST (single-request monolithic upload) is ignored: 202, no blob.
        data = b"monolithic post"
        r = c.post(
            f"/v2/infra/q/blobs/uploads/?digest={sha256_digest(data)}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 202
        assert c.head(f"/v2/infra/q/blobs/{sha256_digest(data)}").status_code == 404
        # A form Content-Type on the PUT makes Go parse the body as a form: DIGEST_INVALID.
        data = b"form content type"
        loc = c.post("/v2/infra/q/blobs/uploads/").headers["Location"]
        sep = "&" if "?" in loc else "?"
        r = c.put(
            f"{loc}{sep}digest={sha256_digest(data)}",
            content=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400 and "DIGEST_INVALID" in r.text
        # A PATCH with a non-octet-stream Content-Type fails with 500.
        loc = c.post("/v2/infra/q/blobs/uploads/").headers["Location"]
        r = c.patch(loc, content=b"chunk", headers={"Content-Type": "text/plain"})
        assert r.status_code == 500


def test_lifecycle_stop_kills_process_and_restart_keeps_storage() -> None:
    with RegistryProcess() as reg:
        pid = reg.pid
        assert pid is not None and reg.running
        with reg.client() as c:
            digest = push_blob(c, "infra/restart", b"survives a restart")
        reg.restart()
        assert reg.running and reg.pid != pid
        with reg.client() as c:
            assert c.head(f"/v2/infra/restart/blobs/{digest}").status_code == 200
        pid = reg.pid
        workdir = reg.workdir
    assert not reg.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    assert not workdir.exists()  # the temp dir we created is gone


def test_start_failure_reports_log_tail() -> None:
    # An unknown storage driver makes docker-registry exit at startup.
    with pytest.raises(RegistryStartError, match="docker-registry log tail"):
        RegistryProcess(config_overrides={"storage": {"nosuchdriver": {}}}, start_timeout=5)


def test_registry_pair_is_two_independent_registries(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
) -> None:
    src, dst = registry_pair
    assert src.port != dst.port and src.storage_dir != dst.storage_dir
    with src.client() as s, dst.client() as d:
        digest = push_blob(s, "infra/pair", b"only in source")
        assert s.head(f"/v2/infra/pair/blobs/{digest}").status_code == 200
        assert d.head(f"/v2/infra/pair/blobs/{digest}").status_code == 404


# -- htpasswd Basic ---------------------------------------------------------------------------


def test_basic_registry_rejects_anonymous_and_accepts_user(basic_registry: RegistryProcess) -> None:
    assert basic_registry.auth == "htpasswd"
    assert (basic_registry.username, basic_registry.password) == (TEST_USERNAME, TEST_PASSWORD)
    with httpx.Client(base_url=basic_registry.url, verify=False) as c:
        r = c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, "wrong")).status_code == 401
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, TEST_PASSWORD)).status_code == 200
    with basic_registry.client() as c:  # carries the credentials
        push_blob(c, "infra/basic", b"authenticated push")


def test_basic_password_rotation_takes_effect_without_restart(
    basic_registry: RegistryProcess,
) -> None:
    pid = basic_registry.pid
    with httpx.Client(base_url=basic_registry.url, verify=False) as c:
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, TEST_PASSWORD)).status_code == 200
        basic_registry.set_password("rotated-1")
        assert basic_registry.password == "rotated-1"
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, TEST_PASSWORD)).status_code == 401
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, "rotated-1")).status_code == 200
        # A second rotation right after the first must also be seen (mtime forced forward).
        basic_registry.set_password("rotated-2")
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, "rotated-1")).status_code == 401
        assert c.get("/v2/", headers=_basic(TEST_USERNAME, "rotated-2")).status_code == 200
    assert basic_registry.pid == pid


# -- Bearer token -----------------------------------------------------------------------------


def test_token_registry_challenge_and_token_flow(
    plain: httpx.Client, token_registry: RegistryProcess, token_server: TokenServer
) -> None:
    assert token_registry.auth == "token"
    with httpx.Client(base_url=token_registry.url, verify=False) as c:
        r = c.post("/v2/infra/token/blobs/uploads/")
        assert r.status_code == 401
        scheme, _, _ = r.headers["WWW-Authenticate"].partition(" ")
        assert scheme == "Bearer"
        params = _challenge_params(r.headers["WWW-Authenticate"])
        assert params["realm"] == token_server.realm
        assert params["service"] == token_server.service
        # docker-registry does not promise an order for the actions.
        typ, name, actions = params["scope"].split(":")
        assert (typ, name, set(actions.split(","))) == (
            "repository",
            "infra/token",
            {"pull", "push"},
        )

        t = plain.get(
            params["realm"],
            params={"service": params["service"], "scope": params["scope"]},
            headers=_basic(TEST_USERNAME, TEST_PASSWORD),
        )
        assert t.status_code == 200
        body = t.json()
        assert body["token"] == body["access_token"]
        assert body["expires_in"] == token_server.expires_in and body["issued_at"].endswith("Z")

        c.headers["Authorization"] = f"Bearer {body['token']}"
        digest = push_blob(c, "infra/token", b"pushed with a bearer token")
        assert c.head(f"/v2/infra/token/blobs/{digest}").status_code == 200

    reqs = token_server.requests
    assert len(reqs) == 1
    assert reqs[0].user == TEST_USERNAME and reqs[0].method == "GET"
    (scope,) = reqs[0].scopes
    assert (scope.type, scope.name, set(scope.actions)) == (
        "repository",
        "infra/token",
        {"pull", "push"},
    )


def test_token_registry_client_and_credentials(
    token_registry: RegistryProcess, token_server: TokenServer
) -> None:
    assert (token_registry.username, token_registry.password) == (TEST_USERNAME, TEST_PASSWORD)
    assert token_server.users[TEST_USERNAME] == TEST_PASSWORD
    with token_registry.client() as c:  # answers the Bearer challenge itself
        digest = push_blob(c, "infra/client", b"via ChallengeAuth")
        assert c.head(f"/v2/infra/client/blobs/{digest}").status_code == 200
    assert {r.user for r in token_server.requests} == {TEST_USERNAME}
    token_registry.set_password("rotated")
    assert token_server.users[TEST_USERNAME] == "rotated"


def test_token_jwt_shape(plain: httpx.Client, token_server: TokenServer) -> None:
    r = plain.get(
        token_server.realm,
        params={"service": token_server.service, "scope": "repository:a/b:pull,push"},
        headers=_basic(TEST_USERNAME, TEST_PASSWORD),
    )
    token = r.json()["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["x5c"] == token_server.signing.x5c
    claims = jwt.decode(
        token,
        _public_key(token_server),
        algorithms=["RS256"],
        audience=token_server.service,
        issuer=token_server.issuer,
    )
    assert claims["sub"] == TEST_USERNAME
    assert claims["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]
    assert {"exp", "nbf", "iat", "jti"} <= claims.keys()


def _public_key(ts: TokenServer) -> PublicKeyTypes:
    return x509.load_der_x509_certificate(ts.signing.cert_der).public_key()


def test_token_server_wrong_password_is_401(plain: httpx.Client, token_server: TokenServer) -> None:
    r = plain.get(
        token_server.realm,
        params={"service": token_server.service, "scope": "repository:a/b:pull"},
        headers=_basic(TEST_USERNAME, "nope"),
    )
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    assert token_server.requests[-1].status == 401


def test_token_anonymous_gets_pull_only(
    plain: httpx.Client, token_registry: RegistryProcess, token_server: TokenServer
) -> None:
    r = plain.get(
        token_server.realm,
        params={"service": token_server.service, "scope": "repository:infra/anon:pull,push"},
    )
    assert r.status_code == 200
    token = r.json()["token"]
    access = jwt.decode(token, options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": "infra/anon", "actions": ["pull"]}]
    with httpx.Client(base_url=token_registry.url, verify=False) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.post("/v2/infra/anon/blobs/uploads/").status_code == 401  # push not granted
        missing = "sha256:" + "0" * 64
        assert c.head(f"/v2/infra/anon/blobs/{missing}").status_code == 404  # pull granted
    assert token_server.requests[-1].user is None


def test_token_server_without_anonymous(
    plain: httpx.Client, token_signing_cert: SigningCert
) -> None:
    with TokenServer(users={"u": "p"}, allow_anonymous=False, signing=token_signing_cert) as ts:
        assert plain.get(ts.realm, params={"scope": "repository:x:pull"}).status_code == 401
        ok = plain.get(ts.realm, params={"scope": "repository:x:pull"}, headers=_basic("u", "p"))
        assert ok.status_code == 200
        assert [r.status for r in ts.requests] == [401, 200]


def test_token_post_password_and_refresh_grants(
    plain: httpx.Client, token_registry: RegistryProcess, token_server: TokenServer
) -> None:
    form = {
        "grant_type": "password",
        "username": TEST_USERNAME,
        "password": TEST_PASSWORD,
        "service": token_server.service,
        "scope": "repository:infra/post:pull,push",
        "client_id": "ocync-tests",
        "access_type": "offline",
    }
    r = plain.post(token_server.realm, data=form)
    assert r.status_code == 200
    refresh = r.json()["refresh_token"]
    assert plain.post(token_server.realm, data={**form, "password": "bad"}).status_code == 401

    r = plain.post(
        token_server.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": token_server.service,
            "scope": "repository:infra/post:pull,push",
        },
    )
    assert r.status_code == 200
    with httpx.Client(base_url=token_registry.url, verify=False) as c:
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        push_blob(c, "infra/post", b"refreshed")
    assert [q.grant_type for q in token_server.requests] == [
        "password",
        "password",
        "refresh_token",
    ]


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push registry:catalog:*") == [
        Scope("repository", "a/b", ("pull", "push")),
        Scope("registry", "catalog", ("*",)),
    ]
    assert parse_scope("repository(plugin):x:pull") == [Scope("repository(plugin)", "x", ("pull",))]
    assert parse_scope("garbage") == []


# -- TLS --------------------------------------------------------------------------------------


def test_tls_registry_trusted_only_with_its_ca(tls_registry: RegistryProcess) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    assert tls_registry.ca_file is not None and tls_registry.ca_file.exists()
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    with httpx.Client(base_url=tls_registry.url, verify=ctx) as c:
        assert c.get("/v2/").status_code == 200
        push_blob(c, "infra/tls", b"over https")
    with (
        httpx.Client(base_url=tls_registry.url) as c,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        c.get("/v2/")
    # localhost is in the SAN too.
    with httpx.Client(verify=ctx) as c:
        assert c.get(f"https://localhost:{tls_registry.port}/v2/").status_code == 200


def test_tls_registry_offers_http2(tls_registry: RegistryProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", tls_registry.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"


# -- images and seeding -----------------------------------------------------------------------


def test_oci_layout_is_a_valid_multi_arch_image(oci_layout: LayoutImage) -> None:
    root = oci_layout.path
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index_json = json.loads((root / "index.json").read_text())
    (desc,) = index_json["manifests"]
    assert desc["annotations"][REF_NAME_ANNOTATION] == "v1"
    assert desc["digest"] == oci_layout.digest == oci_layout.index_digest
    assert desc["mediaType"] == OCI_INDEX

    index = json.loads(oci_layout.manifest_bytes)
    assert sha256_digest(oci_layout.manifest_bytes) == oci_layout.digest
    platforms = [
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    ]
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert tuple(m["digest"] for m in index["manifests"]) == oci_layout.child_digests

    for child in oci_layout.children:
        manifest = json.loads(oci_layout.read_blob(child.digest))
        assert manifest["mediaType"] == OCI_MANIFEST
        config = json.loads(oci_layout.read_blob(manifest["config"]["digest"]))
        assert f"{config['os']}/{config['architecture']}" == child.platform
        for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
            blob = oci_layout.read_blob(layer["digest"])
            assert len(blob) == layer["size"] and sha256_digest(blob) == layer["digest"]
            assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
    # Per-platform layers differ; every blob is on disk.
    assert len(set(oci_layout.blob_digests)) == 6
    for d in oci_layout.blob_digests:
        assert (root / "blobs/sha256" / d[7:]).is_file()


def test_layouts_are_deterministic(tmp_path) -> None:
    a = build_image_layout(tmp_path / "a", seed=7)
    b = build_image_layout(tmp_path / "b", seed=7)
    c = build_image_layout(tmp_path / "c", seed=8)
    assert a.digest == b.digest and a.digest != c.digest
    shared = build_image_layout(tmp_path / "d", layer_sizes=(100, 200, 300), shared_layers=1)
    assert shared.children[0].layers[0] == shared.children[1].layers[0]
    assert shared.children[0].layers[1] != shared.children[1].layers[1]
    assert len(shared.blob_digests) == 1 + 2 * 2 + 2  # shared base + own layers + configs
    # Several tags in one layout.
    single = build_single_image_layout(tmp_path / "a", tag="single", seed=7)
    tags = [
        m["annotations"][REF_NAME_ANNOTATION]
        for m in json.loads((tmp_path / "a/index.json").read_text())["manifests"]
    ]
    assert tags == ["v1", "single"] and not single.is_index


def test_seeded_registry_has_the_layout_digests(seeded_registry: SeededRegistry) -> None:
    image = seeded_registry.image
    assert seeded_registry.reference == f"{seeded_registry.host}/demo/app:v1"
    with seeded_registry.registry.client() as c:
        r = c.head("/v2/demo/app/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == image.index_digest
        assert r.headers["Content-Type"] == OCI_INDEX
        got = c.get("/v2/demo/app/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert got.content == image.manifest_bytes  # byte-for-byte
        for child in image.children:
            r = c.head(
                f"/v2/demo/app/manifests/{child.digest}", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert r.status_code == 200
        for d in image.blob_digests:
            assert c.head(f"/v2/demo/app/blobs/{d}").status_code == 200


def test_manifest_get_without_accept_is_404_for_oci(seeded_registry: SeededRegistry) -> None:
    """Quirk: docker-registry 2.8 only serves an OCI index if the client Accepts it."""
    with seeded_registry.registry.client() as c:
        assert c.get("/v2/demo/app/manifests/v1").status_code == 404


def test_seed_tls_and_authenticated_registries(
    oci_layout: LayoutImage,
    tls_registry: RegistryProcess,
    basic_registry: RegistryProcess,
    token_registry: RegistryProcess,
) -> None:
    path, tag = oci_layout.path, oci_layout.tag
    d = seed_registry(
        path, tag, tls_registry.host, "s/tls", tls_verify=True, cert_dir=tls_registry.cert_dir
    )
    assert d == oci_layout.digest
    creds = (TEST_USERNAME, TEST_PASSWORD)
    assert (
        seed_registry(path, tag, basic_registry.host, "s/basic", creds=creds) == oci_layout.digest
    )
    assert (
        seed_registry(path, tag, token_registry.host, "s/token", creds=creds) == oci_layout.digest
    )
    with httpx.Client(base_url=token_registry.url, auth=ChallengeAuth(*creds), verify=False) as c:
        assert head_manifest_digest(c, "s/token", "v1") == oci_layout.digest


def test_push_image_over_http_docker_flavor(registry: RegistryProcess, tmp_path) -> None:
    image = build_image_layout(tmp_path / "docker", flavor="docker", tag="d1")
    assert image.media_type == DOCKER_MANIFEST_LIST
    with registry.client() as c:
        assert push_image(c, "infra/docker", image) == image.digest
        r = c.get("/v2/infra/docker/manifests/d1", headers={"Accept": MANIFEST_ACCEPT})
        assert r.headers["Content-Type"] == DOCKER_MANIFEST_LIST
        assert r.content == image.manifest_bytes
        # push_manifest by digest (media type read from the body) is idempotent.
        child = image.children[0]
        assert push_manifest(c, "infra/docker", child.digest, image.read_blob(child.digest)) == (
            child.digest
        )
        r = c.get(f"/v2/infra/docker/manifests/{child.digest}", headers={"Accept": MANIFEST_ACCEPT})
        assert r.headers["Content-Type"] == child.manifest.media_type


def test_push_manifest_requires_blobs(registry: RegistryProcess, oci_layout: LayoutImage) -> None:
    """The registry verifies a manifest's blobs exist: a real registry, not an echo."""
    child = oci_layout.children[0]
    with registry.client() as c, pytest.raises(httpx.HTTPStatusError, match="BLOB_UNKNOWN"):
        push_manifest(c, "infra/nob", "v1", oci_layout.read_blob(child.digest))
