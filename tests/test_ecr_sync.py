"""`ocync sync` from a local registry to the emulated Amazon ECR (moto + docker-registry).

Each test is one "must show" of the ECR plugin (issue 5), run as the CLI in a subprocess with
the emulator's AWS environment: the plugin reaches the control plane through the SDK's
standard `AWS_ENDPOINT_URL_ECR`/`AWS_ENDPOINT_URL_STS`, the data plane through the registry's
`endpoint` setting.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.ecr_emulator import EcrEmulator
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def _env(emu: EcrEmulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(emu.env())
    env.update(extra)
    return env


def _command(config: Path) -> list[str]:
    return [sys.executable, "-m", "ocync_core", "sync", "-c", str(config), "--json"]


def ocync_sync(
    config: Path, emu: EcrEmulator, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(config), capture_output=True, text=True, timeout=timeout, env=_env(emu, **env)
    )


def target_repo(repository: str) -> str:
    return repository.replace("corpus/", "mirror/")


def write_config(
    path: Path,
    source: RegistryProcess,
    emu: EcrEmulator,
    corpus: Corpus,
    *,
    ecr: dict[str, Any] | None = None,
    targets: dict[str, dict[str, Any]] | None = None,
) -> Path:
    if targets is None:
        targets = {"ecr": {"url": emu.host, "endpoint": emu.endpoint, **(ecr or {})}}
    doc = {
        "global": {"cache": str(path.parent / "cache.json")},
        "registries": {"src": {"url": source.host}, **targets},
        "defaults": {"source": "src", "targets": list(targets)},
        "mappings": [{"from": r, "to": target_repo(r)} for r in corpus.repositories],
    }
    path.write_text(json.dumps(doc))
    return path


def create_targets(emu: EcrEmulator, corpus: Corpus, *, immutable: bool = False) -> None:
    for repository in corpus.repositories:
        emu.create_repository(target_repo(repository), immutable=immutable)


def ecr_digests(emu: EcrEmulator, corpus: Corpus) -> dict[str, str]:
    """Tag -> digest read from the registry behind the data plane (no proxy, no counting)."""
    found = {}
    auth = {"Authorization": f"Basic {emu.token()}"}
    with httpx.Client(base_url=emu.registry.url) as http:
        for image in corpus.images:
            repo = target_repo(image.repository)
            response = http.head(f"/v2/{repo}/manifests/{image.tag}", headers={**ACCEPT, **auth})
            found[f"{repo}:{image.tag}"] = response.headers.get("Docker-Content-Digest", "")
    return found


def expected_digests(corpus: Corpus) -> dict[str, str]:
    return {f"{target_repo(i.repository)}:{i.tag}": i.digest for i in corpus.images}


def manifest_count(corpus: Corpus) -> int:
    return sum(len(image.manifests) for image in corpus.images)


def seed(registry: RegistryProcess, **kwargs: Any) -> Corpus:
    corpus = build_corpus(**kwargs)
    corpus.push(registry.url)
    return corpus


def report_of(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if run.returncode != 0:
        failed = [i for i in json.loads(run.stdout or "{}").get("images", [])]
        failed = [i for i in failed if i["status"] == "failed"]
        pytest.fail(f"exit {run.returncode}: {failed[:3]}\n{run.stderr[-3000:]}")
    return json.loads(run.stdout)


# --------------------------------------------------------------------------------------------


def test_sync_to_ecr_digests_batch_checks_and_basic_auth(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=4, tags=2)
    create_targets(emu, corpus)
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)

    report = report_of(ocync_sync(config, emu))
    assert report["totals"]["synced"] == len(corpus.images)
    assert report["totals"]["failed"] == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)

    # Existence went through BatchCheckLayerAvailability (the emulator refuses > 100 digests
    # with a 400, which would have failed the run), never a blob HEAD at the data plane.
    assert emu.data_count("blob_head") == 0
    assert emu.api_calls["BatchCheckLayerAvailability"] > 0
    # Basic auth with the ECR token, and no token endpoint.
    assert emu.data_count("Token") == 0
    assert emu.api_calls["GetAuthorizationToken"] == 1
    emu.wait_idle()
    # The only credential-free request is the /v2/ version probe (answered 401 with ECR's
    # Basic challenge); everything that touches a repository carried the ECR token.
    schemes = {r.auth_scheme for r in emu.data_log if r.action != "Ping"}
    assert schemes == {"Basic"}, schemes
    assert not emu.mirror_errors


def test_token_rotation_mid_run_refreshes_once(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=8, tags=2)
    create_targets(emu, corpus)
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)
    # PutImage at 10/s (the plugin paces itself just under it): 48 manifests take ~5 s, so
    # the rotation lands while uploads and manifest pushes are in flight.
    emu.throttle("PutImage", 10)

    def pushed() -> int:
        with emu._lock:  # no wait_idle: the run is busy on purpose
            return sum(1 for r in emu.data_log if r.action == "PutImage" and r.status == 201)

    proc = subprocess.Popen(
        _command(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(emu)
    )
    try:
        deadline = time.monotonic() + 60
        while pushed() < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before the rotation"
        emu.rotate_token()
        rotated_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = report_of(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    assert report["totals"]["synced"] == len(corpus.images)
    assert report["totals"]["failed"] == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)

    emu.wait_idle()
    refused = [r for r in emu.data_log if r.status == 401 and r.auth_scheme == "Basic"]
    after = [r for r in emu.data_log if r.started > rotated_at and r.status < 400]
    assert refused, "no request carried the rotated-out token"
    assert after, "nothing ran after the rotation"
    # One initial fetch and exactly one for the rotation, however many requests were refused.
    assert emu.rotations == 1
    assert emu.api_calls["GetAuthorizationToken"] == 2, (emu.api_calls, len(refused))


# --------------------------------------------------------------------------------------------
# two ECR registries with their own credentials; a role chain through STS


class _SigV4Log:
    """A pass-through proxy in front of the control plane that records, per request, the
    access key id of its SigV4 `Authorization` header and the API action."""

    _CREDENTIAL = re.compile(r"Credential=([^/]+)/")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.calls: list[tuple[str, str]] = []  # (access key id, action)
        log = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = log._CREDENTIAL.search(self.headers.get("Authorization") or "")
                target = self.headers.get("X-Amz-Target") or ""
                action = target.rpartition(".")[2]
                if not action and (a := re.search(rb"Action=(\w+)", body)):
                    action = a[1].decode()
                log.calls.append((m[1] if m else "", action))
                conn = http.client.HTTPConnection(log.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys_for(self, action: str) -> set[str]:
        return {key for key, act in self.calls if act == action}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sigv4_log(ecr_emulator: EcrEmulator) -> Iterator[_SigV4Log]:
    log = _SigV4Log(ecr_emulator.control_endpoint)
    try:
        yield log
    finally:
        log.close()


def test_two_ecr_registries_each_with_its_own_credentials(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, sigv4_log: _SigV4Log, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=2, tags=1)
    create_targets(emu, corpus)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[thirdparty]\n"
        "aws_access_key_id = AKIATHIRDPARTY000001\n"
        "aws_secret_access_key = thirdparty-secret\n"
    )
    # One emulated account: two registry entries for the same host, one on the default
    # chain (the environment's keys), one on `aws_profile`. Each mirrors one repository.
    first, second = corpus.repositories
    doc = {
        "global": {"cache": str(tmp_path / "cache.json")},
        "registries": {
            "src": {"url": registry.host},
            "ecr-default": {"url": emu.host, "endpoint": emu.endpoint},
            "ecr-profile": {
                "url": emu.host,
                "endpoint": emu.endpoint,
                "auth_type": "ecr",
                "aws_profile": "thirdparty",
            },
        },
        "defaults": {"source": "src"},
        "mappings": [
            {"from": first, "to": target_repo(first), "targets": ["ecr-default"]},
            {"from": second, "to": target_repo(second), "targets": ["ecr-profile"]},
        ],
    }
    config = tmp_path / "ocync.yaml"
    config.write_text(json.dumps(doc))

    run = ocync_sync(
        config,
        emu,
        AWS_ENDPOINT_URL_ECR=sigv4_log.url,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
    )
    report = report_of(run)
    assert report["totals"]["synced"] == len(corpus.images) == 2
    assert ecr_digests(emu, corpus) == expected_digests(corpus)

    # Two tokens, one per registry, each fetched with that registry's keys.
    assert sorted(k for k, a in sigv4_log.calls if a == "GetAuthorizationToken") == [
        "AKIATHIRDPARTY000001",
        "testing",
    ]
    assert sigv4_log.keys_for("BatchCheckLayerAvailability") == {
        "testing",
        "AKIATHIRDPARTY000001",
    }
    assert "" not in {key for key, _ in sigv4_log.calls}


def test_aws_profile_role_chain_assumes_the_role(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, sigv4_log: _SigV4Log, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=1, tags=1)
    create_targets(emu, corpus)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[base]\naws_access_key_id = AKIABASEPROFILE00001\naws_secret_access_key = base-secret\n"
    )
    aws_config = tmp_path / "config"
    aws_config.write_text(
        "[profile mirror]\n"
        f"role_arn = arn:aws:iam::{emu.account_id}:role/ocync-mirror\n"
        "source_profile = base\n"
        "role_session_name = ocync-test\n"
        f"region = {emu.region}\n"
    )
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)
    env = _env(emu, AWS_ENDPOINT_URL_ECR=sigv4_log.url, AWS_ENDPOINT_URL_STS=sigv4_log.url)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # env keys would win
        env.pop(key)
    env.update(
        AWS_PROFILE="mirror",
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(aws_config),
    )
    run = subprocess.run(_command(config), capture_output=True, text=True, timeout=120, env=env)
    report = report_of(run)
    assert report["totals"]["synced"] == 1
    assert ecr_digests(emu, corpus) == expected_digests(corpus)

    # The base profile's keys were used for sts:AssumeRole only; ECR got the role's keys.
    # (One AssumeRole per boto3 session: the plugin makes one per EcrApi, i.e. for auth,
    # existence checks and repository checks.)
    assert 1 <= emu.api_calls["AssumeRole"] <= 3
    assert sigv4_log.keys_for("AssumeRole") == {"AKIABASEPROFILE00001"}
    ecr_keys = {key for key, action in sigv4_log.calls if action != "AssumeRole"}
    assert ecr_keys and all(key.startswith("ASIA") for key in ecr_keys), ecr_keys
    assert sigv4_log.keys_for("GetAuthorizationToken") <= ecr_keys


# --------------------------------------------------------------------------------------------


def test_warm_rerun_uploads_nothing_and_pushes_nothing(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=3, tags=2)
    # No repositories yet: `create_repositories: true` makes them.
    config = write_config(
        tmp_path / "ocync.yaml", registry, emu, corpus, ecr={"create_repositories": True}
    )
    cold = report_of(ocync_sync(config, emu))
    assert cold["totals"]["synced"] == len(corpus.images)
    created = emu.ecr.describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in created) == sorted(
        target_repo(r) for r in corpus.repositories
    )
    assert emu.api_calls["CreateRepository"] == len(corpus.repositories)
    assert emu.data_count("PutImage", 201) == manifest_count(corpus)

    emu.reset_counts()
    warm = report_of(ocync_sync(config, emu))
    assert warm["totals"]["skipped"] == len(corpus.images)
    assert warm["totals"]["bytes"] == 0 and warm["totals"]["blobs_transferred"] == 0
    assert emu.data_count("InitiateLayerUpload") == 0
    assert emu.data_count("CompleteLayerUpload") == 0
    assert emu.data_count("PutImage") == 0
    assert emu.api_calls["CreateRepository"] == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)


def test_immutable_repository_rerun_is_skipped(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=2, tags=2)
    create_targets(emu, corpus, immutable=True)
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)
    assert report_of(ocync_sync(config, emu))["totals"]["synced"] == len(corpus.images)

    # Again, without the cache: the tags are looked at afresh and are immutable.
    (tmp_path / "cache.json").unlink(missing_ok=True)
    emu.reset_counts()
    run = ocync_sync(config, emu)
    report = report_of(run)
    assert run.returncode == 0
    assert [i["status"] for i in report["images"]] == ["skipped"] * len(corpus.images)
    assert report["totals"]["failed"] == 0
    assert emu.data_count("PutImage", 201) == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)


@pytest.mark.parametrize("mounting", [False, True], ids=["mounting-off", "mounting-on"])
def test_blob_mounting(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path, mounting: bool
) -> None:
    emu = ecr_emulator
    emu.set_blob_mounting(mounting)
    # One family: every repository shares the base layer of each platform.
    corpus = seed(registry, repositories=4, tags=1, families=1)
    create_targets(emu, corpus)
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)
    report = report_of(ocync_sync(config, emu))
    assert report["totals"]["synced"] == len(corpus.images)
    assert report["totals"]["failed"] == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)

    per_repo = sum(len(b) for b in corpus.blobs_by_repository().values())
    shared = per_repo - len(corpus.unique_blobs)
    assert shared > 0
    attempts = emu.data_count("mount")
    assert attempts > 0
    uploads = emu.data_count("CompleteLayerUpload", 201)
    if not mounting:
        # Every mount opened a plain upload (202), which was then used.
        assert emu.data_count("mount", 202) == attempts
        assert emu.data_count("mount", 201) == 0
        assert uploads == per_repo
        assert report["totals"]["blobs_mounted"] == 0
    else:
        mounted = emu.data_count("mount", 201)
        assert mounted > 0
        assert uploads == per_repo - mounted
        assert report["totals"]["blobs_mounted"] == mounted


def test_putimage_throttled_at_10_per_second_sees_no_429(
    registry: RegistryProcess, ecr_emulator: EcrEmulator, tmp_path: Path
) -> None:
    emu = ecr_emulator
    corpus = seed(registry, repositories=8, tags=2)
    assert manifest_count(corpus) == 48
    create_targets(emu, corpus)
    emu.throttle("PutImage", 10)
    config = write_config(tmp_path / "ocync.yaml", registry, emu, corpus)
    report = report_of(ocync_sync(config, emu))
    assert report["totals"]["synced"] == len(corpus.images)
    assert report["totals"]["failed"] == 0
    assert emu.data_count("PutImage", 201) == 48
    assert emu.data_count("PutImage", 429) == 0
    assert emu.throttled["PutImage"] == 0
    assert ecr_digests(emu, corpus) == expected_digests(corpus)
