"""No secret ever reaches what ocync prints or writes, whatever happens during a run.

A small world of real registries, each holding a distinctive secret reached a different way:

- the source: Bearer tokens from a token server, for a password interpolated from ``${VAR}``;
- target ``basic``: htpasswd, credentials from a Docker config ``auths`` entry (base64);
- target ``helped``: htpasswd, credentials from a docker credential helper;
- target ``ecr``: the ECR emulator, its password handed out by ``GetAuthorizationToken``
  (the AWS secret access key the SDK signs with is distinctive too).

Every scenario (success, refused credentials, a token server that is down, registries answering
401/403/500 with the Authorization header quoted in their body, a connection reset mid-upload)
runs the real CLI; everything it printed (text, ``--json``, ``-vv`` debug logs with tracebacks)
and wrote (the transfer cache, staged blobs) is searched for every secret, its base64 forms,
every token the token server issued, and ``Authorization:``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocync_conformance.certs import SigningCert
from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.ecr_emulator import EcrEmulator
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy, FaultRule, RequestView
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import Scope, TokenServer
from ocync_core.auth.bearer import TokenCache, TokenError, TokenKey
from ocync_core.auth.credentials import Credentials

OCYNC = [sys.executable, "-m", "ocync_core"]
# An Authorization header with its value: a registry's quoted header redacted to `***` is fine.
_SHOWN_AUTHORIZATION = re.compile(r"authorization:\s*(?:(?:basic|bearer)\s+)?(?!\*\*\*)\S", re.I)

SOURCE_USER = "mirror-bot"
SOURCE_PASSWORD = "src-pw-Vq7LkX2e-leakcheck"
WRONG_PASSWORD = "wrong-pw-Rt5Yh8Ms-leakcheck"
DOCKER_USER = "pusher"
DOCKER_PASSWORD = "auths-pw-Hx71QaZc-leakcheck"
HELPER_USER = "helped"
HELPER_SECRET = "helper-secret-Pz44mNbW-leakcheck"
AWS_SECRET_KEY = "aws-secret-Kk93JdUe-leakcheck"
INLINE_TOKEN = "inline-token-Ww3Nn8Qe-leakcheck"

# Distinct images (no blob in common), so that no target repository mounts a blob from
# another one: each failure scenario really uploads.
CORPUS_REPOSITORIES = 6


class RecordingTokenServer(TokenServer):
    """The kit's token server, remembering every token it issued (they are secrets too)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issued: list[str] = []
        self._issued_lock = threading.Lock()

    def issue(self, user: str | None, scopes: Iterable[Scope]) -> tuple[str, int, str]:
        token, expires_in, issued_at = super().issue(user, scopes)
        with self._issued_lock:
            self.issued.append(token)
        return token, expires_in, issued_at


def echo_authorization(proxy: FaultProxy, status: int, **scope: Any) -> FaultRule:
    """Answer `status` with an error body quoting the request's Authorization header, as
    misconfigured front ends and debug error pages do."""
    rule = proxy.fail(status=status, body=b"", **scope)

    def quote(request: RequestView) -> bool:
        got = request.headers.get("authorization", "")
        rule.body = json.dumps(
            {
                "errors": [
                    {
                        "code": "DENIED" if status in (401, 403) else "UNKNOWN",
                        "message": f"rejected request with Authorization: {got}",
                        "detail": {"Authorization": got},
                    }
                ]
            }
        ).encode()
        return True

    rule.when = quote
    return rule


_HELPER = """#!/bin/sh
server=$(cat)
echo "$1 $server" >> "{log}"
if [ "$1" = "get" ] && [ "$server" = "{server}" ]; then
    printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server"
    exit 0
fi
echo "credentials not found in native keychain"
exit 1
"""


@dataclass
class World:
    """The registries, the Docker config and the environment every scenario runs in."""

    root: Path
    token_server: RecordingTokenServer
    source: RegistryProcess
    orphan: RegistryProcess  # a token registry whose token server is down
    basic: RegistryProcess
    front: FaultProxy  # in front of `basic`: where registry errors are injected
    helped: RegistryProcess
    ecr: EcrEmulator
    corpus: Corpus
    helper_log: Path
    env: dict[str, str] = field(default_factory=dict)

    def needles(self) -> dict[str, str]:
        """Every secret, by a name for the failure message, in every form it could leak."""
        plain = {
            "source password": SOURCE_PASSWORD,
            "wrong password": WRONG_PASSWORD,
            "docker config password": DOCKER_PASSWORD,
            "credential helper secret": HELPER_SECRET,
            "AWS secret key": AWS_SECRET_KEY,
            "inline token": INLINE_TOKEN,
            "ECR password": self.ecr.password,
        }
        found: dict[str, str] = {}
        for name, value in plain.items():
            found[name] = value
            found[f"{name} (base64)"] = _b64(value)
        for user, value in [
            (SOURCE_USER, SOURCE_PASSWORD),
            (SOURCE_USER, WRONG_PASSWORD),
            (DOCKER_USER, DOCKER_PASSWORD),
            (HELPER_USER, HELPER_SECRET),
        ]:
            found[f"Basic credentials of {user}"] = _b64(f"{user}:{value}")
        found["ECR authorization token"] = self.ecr.token()
        for i, token in enumerate(self.token_server.issued):
            found[f"issued bearer token {i}"] = token
            found[f"issued bearer token {i} signature"] = token.rsplit(".", 1)[-1]
        return found

    def config(self, path: Path, mappings: list[dict[str, Any]], **extra: Any) -> Path:
        doc = {
            "global": {"cache": str(path / "cache.json"), "staging_dir": str(path / "staging")},
            "registries": {
                "src": {
                    "url": self.source.host,
                    "credentials": {"username": SOURCE_USER, "password": "${SOURCE_PASSWORD}"},
                },
                "orphan": {
                    "url": self.orphan.host,
                    "credentials": {"username": SOURCE_USER, "password": "${SOURCE_PASSWORD}"},
                },
                "basic": {"url": self.front.host},
                "helped": {"url": self.helped.host},
                "ecr": {
                    "url": self.ecr.host,
                    "endpoint": self.ecr.endpoint,
                    "create_repositories": True,
                },
                **extra,
            },
            "defaults": {"source": "src", "targets": ["basic", "helped", "ecr"]},
            "mappings": mappings,
        }
        file = path / "mirror.yaml"
        file.write_text(json.dumps(doc, indent=2))
        return file


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _push_corpus(http: httpx.Client, corpus: Corpus) -> None:
    for image in corpus.images:
        for digest, data in image.blobs.items():
            push_blob(http, image.repository, data, digest=digest)
        for reference, body, media_type in image.manifests:
            push_manifest(http, image.repository, reference, body, media_type)


def _docker_home(root: Path, basic_host: str, helped_host: str, helper_log: Path) -> Path:
    home = root / "docker"
    home.mkdir()
    auth = _b64(f"{DOCKER_USER}:{DOCKER_PASSWORD}")
    (home / "config.json").write_text(
        json.dumps(
            {
                "auths": {basic_host: {"auth": auth}},
                "credHelpers": {helped_host: "leakcheck"},
            }
        )
    )
    bin_dir = root / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-leakcheck"
    helper.write_text(
        _HELPER.format(log=helper_log, server=helped_host, user=HELPER_USER, secret=HELPER_SECRET)
    )
    helper.chmod(0o755)
    return home


@pytest.fixture(scope="module")
def world(
    registry_binary: str,
    token_signing_cert: SigningCert,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    pytest.importorskip("moto.server")
    root = tmp_path_factory.mktemp("leaks")
    corpus = build_corpus(
        repositories=CORPUS_REPOSITORIES,
        tags=1,
        families=CORPUS_REPOSITORIES,
        base_size=16 * 1024,
        app_size=4 * 1024,
    )
    with (
        RecordingTokenServer(signing=token_signing_cert) as token_server,
        RecordingTokenServer(signing=token_signing_cert) as dead_server,
        RegistryProcess(
            workdir=root / "source",
            token_server=token_server,
            username=SOURCE_USER,
            password=SOURCE_PASSWORD,
        ) as source,
        RegistryProcess(
            workdir=root / "orphan",
            token_server=dead_server,
            username=SOURCE_USER,
            password=SOURCE_PASSWORD,
        ) as orphan,
        RegistryProcess(
            workdir=root / "basic", username=DOCKER_USER, password=DOCKER_PASSWORD
        ) as basic,
        FaultProxy(basic, name="basic-front") as front,
        RegistryProcess(
            workdir=root / "helped", username=HELPER_USER, password=HELPER_SECRET
        ) as helped,
        EcrEmulator(workdir=root / "ecr") as ecr,
    ):
        for registry in (source, orphan):
            with registry.client() as http:
                _push_corpus(http, corpus)
        dead_server.stop()  # from now on its port refuses connections
        helper_log = root / "helper.log"
        home = _docker_home(root, front.host, helped.host, helper_log)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OCYNC_", "AWS_")) and k != "DOCKER_CONFIG"
        }
        env.update(ecr.env())
        env.update(
            {
                "AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
                "DOCKER_CONFIG": str(home),
                "PATH": f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "SOURCE_PASSWORD": SOURCE_PASSWORD,
            }
        )
        yield World(
            root=root,
            token_server=token_server,
            source=source,
            orphan=orphan,
            basic=basic,
            front=front,
            helped=helped,
            ecr=ecr,
            corpus=corpus,
            helper_log=helper_log,
            env=env,
        )


@pytest.fixture
def front(world: World) -> Iterator[FaultProxy]:
    """The fault proxy in front of `basic`, without faults."""
    world.front.clear_faults()
    yield world.front
    world.front.clear_faults()


@dataclass
class Outputs:
    """Everything one scenario printed or wrote, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)

    def run(self, world: World, label: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*OCYNC, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**world.env, **env},
            check=False,
        )
        self.texts[f"{label}: stdout"] = result.stdout
        self.texts[f"{label}: stderr"] = result.stderr
        return result

    def files(self, *roots: Path) -> None:
        """Every file under these paths (a file or a directory tree)."""
        for root in roots:
            paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in paths:
                self.texts[f"file {path}"] = path.read_bytes().decode("latin-1")

    def assert_no_leaks(self, needles: dict[str, str]) -> None:
        leaks = []
        for where, text in self.texts.items():
            for name, needle in needles.items():
                at = text.find(needle)
                if at >= 0:
                    leaks.append(f"{name} in {where}: ...{text[max(0, at - 80) : at + 20]!r}")
            shown = _SHOWN_AUTHORIZATION.search(text)
            if shown is not None:
                at = shown.start()
                leaks.append(f"an Authorization header in {where}: ...{text[at : at + 60]!r}")
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


def _mapping(world: World, index: int, to: str, **extra: Any) -> dict[str, Any]:
    return {"from": world.corpus.repositories[index], "to": to, **extra}


def _report(result: subprocess.CompletedProcess) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout)


async def test_a_token_endpoint_quoting_the_authorization_header_leaks_nothing(
    token_signing_cert: SigningCert,
) -> None:
    with (
        TokenServer(users={SOURCE_USER: SOURCE_PASSWORD}, signing=token_signing_cert) as server,
        FaultProxy(server.url, name="token-front") as front,
    ):
        echo = echo_authorization(front, 401, path="^/token")
        key = TokenKey(f"{front.url}/token", server.service, frozenset({"repository:a/b:pull"}))
        async with httpx.AsyncClient() as http:
            with pytest.raises(TokenError) as caught:
                await TokenCache(http, label="src").get(
                    key, credentials=Credentials(SOURCE_USER, SOURCE_PASSWORD)
                )
    assert echo.fired == 1
    message = str(caught.value)
    assert "answered 401 (rejected request with Authorization: ***)" in message
    for secret in (SOURCE_PASSWORD, _b64(f"{SOURCE_USER}:{SOURCE_PASSWORD}")):
        assert secret not in message


# -- scenarios --------------------------------------------------------------------------------


def test_a_successful_sync_to_every_kind_of_target_leaks_nothing(world: World, front, tmp_path):
    config = world.config(tmp_path, [_mapping(world, 0, "leak/ok")])
    out = Outputs()
    tokens_before = len(world.token_server.issued)
    cold = out.run(world, "cold sync -vv --json", "-vv", "sync", "-c", str(config), "--json")
    assert cold.returncode == 0, cold.stderr[-3000:]
    report = _report(cold)
    assert [i["status"] for i in report["images"]] == ["synced"] * 3, report["images"]
    # Every secret was really used: a token issued, the helper asked, ECR's token fetched.
    assert len(world.token_server.issued) > tokens_before
    assert f"get {world.helped.host}" in world.helper_log.read_text()
    assert world.ecr.api_calls["GetAuthorizationToken"] >= 1
    assert "DEBUG" in cold.stderr  # the debug log really ran

    warm = out.run(world, "warm sync", "sync", "-c", str(config))
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "0 images synced, 3 skipped" in warm.stdout

    assert (tmp_path / "cache.json").is_file()
    out.files(tmp_path / "cache.json", tmp_path / "staging")
    assert any(where.startswith("file") and "staging" in where for where in out.texts)
    out.assert_no_leaks(world.needles())


def test_copy_with_credentials_from_flags_and_environment_leaks_nothing(world: World, front):
    image = world.corpus.images[1]
    source = f"{world.source.host}/{image.repository}:{image.tag}"
    out = Outputs()
    copied = out.run(
        world, "copy -vv --json",
        "-vv", "copy", "--json", source, f"{world.helped.host}/leak/copy:{image.tag}",
        "--dest-creds", f"{HELPER_USER}:{HELPER_SECRET}",
        OCYNC_SRC_CREDS=f"{SOURCE_USER}:{SOURCE_PASSWORD}",
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr[-3000:]
    assert json.loads(copied.stdout)["status"] == "copied"

    refused = out.run(
        world, "copy with a wrong password",
        "-vv", "copy", source, f"{world.helped.host}/leak/copy:{image.tag}",
        "--src-creds", f"{SOURCE_USER}:{WRONG_PASSWORD}",
    )  # fmt: skip
    assert refused.returncode == 4, refused.stderr[-3000:]
    assert "check the credentials" in refused.stderr

    token = out.run(
        world, "copy with a refused pre-issued token",
        "copy", source, f"{world.helped.host}/leak/copy:{image.tag}",
        "--dest-token", INLINE_TOKEN,
    )  # fmt: skip
    assert token.returncode == 4, token.stderr[-3000:]
    out.assert_no_leaks(world.needles())


def test_refused_credentials_leak_nothing(world: World, front, tmp_path):
    config = world.config(tmp_path, [_mapping(world, 2, "leak/refused")])
    out = Outputs()
    wrong_source = out.run(
        world, "sync -vv --log-format json, wrong source password",
        "-vv", "--log-format", "json", "sync", "-c", str(config),
        SOURCE_PASSWORD=WRONG_PASSWORD,
    )  # fmt: skip
    assert wrong_source.returncode != 0
    lines = [json.loads(line) for line in wrong_source.stderr.splitlines() if line.strip()]
    refusals = [entry for entry in lines if "answered 401" in entry["message"]]
    assert refusals and "check the credentials" in refusals[0]["message"], lines[-5:]

    wrong_home = tmp_path / "wrong-docker"
    wrong_home.mkdir()
    (wrong_home / "config.json").write_text(
        json.dumps(
            {
                "auths": {world.front.host: {"auth": _b64(f"{DOCKER_USER}:{WRONG_PASSWORD}")}},
                "credHelpers": {world.helped.host: "leakcheck"},
            }
        )
    )
    wrong_target = out.run(
        world, "sync --json, wrong target password",
        "-vv", "sync", "-c", str(config), "--json",
        DOCKER_CONFIG=str(wrong_home),
    )  # fmt: skip
    report = _report(wrong_target)
    failed = [i for i in report["images"] if i["status"] == "failed"]
    assert [i["target"].split("/")[0] for i in failed] == [world.front.host], report
    assert "401" in failed[0]["reason"]
    out.files(tmp_path / "cache.json")
    out.assert_no_leaks(world.needles())


def test_registry_errors_quoting_the_authorization_header_leak_nothing(
    world: World, front: FaultProxy, tmp_path
):
    """One run, five failures at once: a 500 (retried, then given up), a 401 and a 403 on
    the manifest PUT, a 403 on the blob upload (the session is open, bytes are sent), a
    token server that is down; plus a connection reset mid-upload, retried successfully."""
    rules = {
        "500": echo_authorization(front, 500, actions="manifest_put", path="/leak/e500/"),
        "401": echo_authorization(front, 401, actions="manifest_put", path="/leak/e401/"),
        "403": echo_authorization(front, 403, actions="manifest_put", path="/leak/e403/"),
        "upload 403": echo_authorization(
            front, 403, actions=["upload_chunk", "upload_finish"], path="/leak/upload/"
        ),
    }
    reset = front.reset_connection(
        ["upload_chunk", "upload_finish"], count=1, after_bytes=0, path="/leak/reset/"
    )
    basic_only = {"targets": "basic"}
    quick = [  # failures that are not retried
        _mapping(world, 1, "leak/e401", **basic_only),
        _mapping(world, 2, "leak/e403", **basic_only),
        _mapping(world, 3, "leak/upload", **basic_only),
    ]
    retried = [
        _mapping(world, 0, "leak/e500", **basic_only),
        _mapping(world, 4, "leak/reset", **basic_only),
        _mapping(world, 5, "leak/orphan", source="orphan", **basic_only),
    ]
    out = Outputs()
    config = world.config(tmp_path, quick + retried)
    result = out.run(world, "sync -vv --json", "-vv", "sync", "-c", str(config), "--json")
    report = _report(result)
    by_target = {i["target"].split("/", 1)[1]: i for i in report["images"]}
    assert by_target["leak/reset:1.0.0"]["status"] == "synced", by_target
    for repo, status in [("e500", "500"), ("e401", "401"), ("e403", "403"), ("upload", "403")]:
        image = by_target[f"leak/{repo}:1.0.0"]
        assert image["status"] == "failed" and f"-> {status}" in image["reason"], image
        assert "rejected request with Authorization: ***" in image["reason"], image
    orphan = [e for e in report["errors"] if world.orphan.host in e]
    assert orphan and "gave up after 5 attempts (last: ConnectError: token endpoint" in orphan[0]
    for name, rule in rules.items():
        assert rule.fired >= 1, f"the {name} fault never fired"
    assert reset.fired == 1
    assert "Traceback" in result.stderr  # failed images are logged with their traceback
    assert "retrying" in result.stderr  # the reset upload was retried

    text_config = tmp_path / "text"
    text_config.mkdir()
    again = out.run(world, "sync (text)", "sync", "-c", str(world.config(text_config, quick)))
    assert again.returncode == 4, again.stderr  # every image failed on a refusal (401, 403)
    assert again.stdout.count("failed  ") == 3, again.stdout
    out.files(tmp_path / "cache.json", tmp_path / "staging")
    out.assert_no_leaks(world.needles())


def test_validate_and_expand_leak_nothing(world: World, tmp_path):
    spare = {
        "spare": {"url": "registry.example.test", "token": INLINE_TOKEN},
        "inline": {
            "url": "other.example.test",
            "credentials": {"username": "someone", "password": HELPER_SECRET},
        },
    }
    config = world.config(tmp_path, [_mapping(world, 0, "leak/valid")], **spare)
    out = Outputs()
    valid = out.run(world, "validate", "validate", str(config))
    assert valid.returncode == 0 and "valid" in valid.stdout, valid.stderr
    expanded = out.run(world, "expand", "expand", str(config))
    assert expanded.returncode == 0, expanded.stderr
    # src's and orphan's interpolated passwords, spare's token, inline's password
    assert expanded.stdout.count("'***'") == 4, expanded.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    bad = world.config(
        broken,
        [_mapping(world, 0, "leak/valid")],
        spare={"url": "x.example.test", "token": [INLINE_TOKEN]},
        inline={
            "url": "y.example.test",
            "credentials": {"username": "u", "password": {"a": HELPER_SECRET}},
        },
    )
    invalid = out.run(world, "validate (invalid)", "validate", str(bad))
    assert invalid.returncode == 3 and "spare.token" in invalid.stderr, invalid.stderr
    out.assert_no_leaks(world.needles())
