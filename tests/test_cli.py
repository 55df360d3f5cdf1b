"""The `ocync` command line, run as a subprocess (`python -m ocync_core`) against real registries.

Every run goes through `ocync()`, which also checks that the test password never appears in
its output, whatever the command and whatever the verbosity.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tinyplugin import build_and_install_tiny, tiny_env

import ocync_core
from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_core import mediatypes

OCYNC = [sys.executable, "-m", "ocync_core"]
ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
JSON_FIELDS = {
    "source",
    "target",
    "status",
    "digest",
    "media_type",
    "reason",
    "platforms",
    "manifests_pushed",
    "blobs_transferred",
    "blobs_mounted",
    "blobs_skipped",
    "bytes",
    "duration",
}


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ocync-tiny, built into a wheel and pip-installed into its own directory (once)."""
    return build_and_install_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited ocync settings, an empty Docker config directory."""
    docker_dir = tmp_path / "docker-home"
    docker_dir.mkdir()
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OCYNC_") and k not in ("TINY_HOSTS", "DOCKER_CONFIG")
    }
    clean["DOCKER_CONFIG"] = str(docker_dir)  # never the developer's ~/.docker
    return clean


def ocync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*OCYNC, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert TEST_PASSWORD not in result.stdout + result.stderr, "the password leaked"
    return result


def assert_same_image(source_url: str, source_repo: str, target_url: str, target_repo: str,
                      tag: str) -> str:  # fmt: skip
    """The target's tag, children and blobs have the source's digests; returns the digest."""
    with (
        httpx.Client(base_url=source_url, verify=False) as src,
        httpx.Client(base_url=target_url, verify=False) as dst,
    ):
        top = src.get(f"/v2/{source_repo}/manifests/{tag}", headers=ACCEPT)
        top.raise_for_status()
        digest = top.headers["Docker-Content-Digest"]
        copied = dst.get(f"/v2/{target_repo}/manifests/{tag}", headers=ACCEPT)
        assert copied.status_code == 200, copied.text
        assert copied.headers["Docker-Content-Digest"] == digest
        assert copied.content == top.content
        for child in json.loads(top.content).get("manifests", []):
            path = f"/v2/{target_repo}/manifests/{child['digest']}"
            child_doc = dst.get(path, headers=ACCEPT)
            assert child_doc.status_code == 200
            assert child_doc.headers["Docker-Content-Digest"] == child["digest"]
            doc = json.loads(child_doc.content)
            for blob in [doc["config"], *doc["layers"]]:
                head = dst.head(f"/v2/{target_repo}/blobs/{blob['digest']}")
                assert head.status_code == 200
                assert int(head.headers["Content-Length"]) == blob["size"]
    return digest


def target_log_lines(log_file: Path, method: str, repository: str) -> list[str]:
    """The target registry's access-log lines for `method` on `repository`'s blob uploads."""
    needle = f'"{method} /v2/{repository}/blobs/uploads/'
    return [line for line in log_file.read_text().splitlines() if needle in line]


# -- informational commands -----------------------------------------------------------------


def test_version(env) -> None:
    result = ocync("--version", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ocync, version {ocync_core.__version__}"


def test_copy_help(env) -> None:
    result = ocync("copy", "--help", env=env)
    assert result.returncode == 0, result.stderr
    for flag in ("--dest-endpoint", "--dest-insecure-http", "--docker-config", "--json"):
        assert flag in result.stdout
    assert ocync("-h", env=env).returncode == 0


def test_plugins_lists_the_builtin(env) -> None:
    result = ocync("plugins", env=env)
    assert result.returncode == 0, result.stderr
    assert f"ocync_oci {ocync_core.__version__} [built-in] kinds: oci" in result.stdout
    assert "ocync_upload_strategy" in result.stdout

    as_json = ocync("plugins", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    infos = json.loads(as_json.stdout)
    oci = {info["name"]: info for info in infos}["ocync_oci"]
    assert oci["builtin"] is True
    assert oci["version"] == ocync_core.__version__
    assert oci["kinds"] == ["oci"]
    assert "ocync_mount_policy" in oci["hooks"]
    assert set(oci) == {"name", "version", "kinds", "hooks", "builtin", "hosts"}


def test_plugins_lists_installed_third_party(tiny_site, env) -> None:
    plugin_env = tiny_env(tiny_site, **{k: v for k, v in env.items() if k == "DOCKER_CONFIG"})
    result = ocync("plugins", env=plugin_env)
    assert result.returncode == 0, result.stderr
    assert "tiny 0.3.1 [third-party] kinds: tiny" in result.stdout
    assert "ocync_oci" in result.stdout
    infos = {i["name"]: i for i in json.loads(ocync("plugins", "--json", env=plugin_env).stdout)}
    assert infos["tiny"]["version"] == "0.3.1"
    assert infos["tiny"]["kinds"] == ["tiny"]
    assert infos["tiny"]["builtin"] is False
    # The allow-list hides it again.
    hidden = ocync("plugins", env={**plugin_env, "OCYNC_PLUGINS": "ocync_oci"})
    assert hidden.returncode == 0, hidden.stderr
    assert "tiny" not in hidden.stdout


# -- copy -----------------------------------------------------------------------------------


def test_copy_json_fields(seeded_registry, target_registry, env) -> None:
    source = seeded_registry.reference
    target = f"{target_registry.host}/json/app:v1"
    result = ocync("copy", "--json", source, target, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == JSON_FIELDS
    assert report["source"] == source
    assert report["target"] == target
    assert report["status"] == "copied"
    assert report["digest"] == seeded_registry.digest
    assert report["media_type"] == mediatypes.OCI_INDEX
    assert report["reason"] == ""
    assert sorted(report["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert report["manifests_pushed"] == 3
    assert report["blobs_transferred"] == len(set(seeded_registry.image.blob_digests))
    assert report["blobs_mounted"] == report["blobs_skipped"] == 0
    assert report["bytes"] > 0
    assert isinstance(report["duration"], float | int) and report["duration"] >= 0
    assert_same_image(seeded_registry.url, "demo/app", target_registry.url, "json/app", "v1")

    again = json.loads(ocync("copy", "--json", source, target, env=env).stdout)
    assert set(again) == JSON_FIELDS
    assert again["status"] == "skipped"
    assert again["reason"]
    assert again["digest"] == seeded_registry.digest


def test_copy_with_third_party_plugin(tiny_site, seeded_registry, target_registry, tmp_path,
                                      env) -> None:  # fmt: skip
    log = tmp_path / "tiny.log"
    plugin_env = tiny_env(
        tiny_site,
        TINY_HOSTS=target_registry.host,
        OCYNC_TINY_LOG=str(log),
        DOCKER_CONFIG=env["DOCKER_CONFIG"],
    )
    target = f"{target_registry.host}/tiny/app:v1"
    result = ocync("copy", "--json", seeded_registry.reference, target, env=plugin_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "copied"
    assert report["digest"] == seeded_registry.digest

    # tiny's existence checker ran for the target (the only registry it claims) ...
    lines = log.read_text().splitlines()
    assert lines, "tiny's existence checker was not used"
    assert all(line.startswith("exists tiny/app sha256:") for line in lines)
    checked = {digest for line in lines for digest in line.split()[2:]}
    assert checked == set(seeded_registry.image.blob_digests)
    # ... and its SINGLE_PATCH strategy: one PATCH per blob, never a streamed PUT body.
    patches = target_log_lines(target_registry.log_file, "PATCH", "tiny/app")
    assert len(patches) == report["blobs_transferred"] == len(checked)
    digest = assert_same_image(
        seeded_registry.url, "demo/app", target_registry.url, "tiny/app", "v1"
    )
    assert digest == seeded_registry.digest


def test_copy_without_third_party_plugin_uses_post_put(seeded_registry, target_registry,
                                                        env) -> None:  # fmt: skip
    """The control for the test above: the generic plugin never PATCHes."""
    target = f"{target_registry.host}/plain/app:v1"
    result = ocync("copy", seeded_registry.reference, target, env=env)
    assert result.returncode == 0, result.stderr
    assert target_log_lines(target_registry.log_file, "PATCH", "plain/app") == []
    assert target_log_lines(target_registry.log_file, "PUT", "plain/app")


def test_copy_to_dest_endpoint(seeded_registry, target_registry, env) -> None:
    result = ocync(
        "copy", "--json", seeded_registry.reference, "mirror.example.test/app:v1",
        "--dest-endpoint", f"http://{target_registry.host}", "--dest-insecure-http",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == "mirror.example.test/app:v1"
    assert report["status"] == "copied"
    digest = assert_same_image(seeded_registry.url, "demo/app", target_registry.url, "app", "v1")
    assert digest == seeded_registry.digest


def test_bad_dest_endpoint_is_bad_input(seeded_registry, env) -> None:
    result = ocync(
        "copy", seeded_registry.reference, "mirror.example.test/app:v1",
        "--dest-endpoint", "ftp://127.0.0.1:1/path",
        env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "ftp://127.0.0.1:1/path" in result.stderr


def _write_docker_config(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_docker_config_auths(seeded_registry, basic_registry, tmp_path, env) -> None:
    target = f"{basic_registry.host}/team/app:v1"
    # Without credentials the registry refuses: exit 4.
    refused = ocync("copy", seeded_registry.reference, target, env=env)
    assert refused.returncode == 4, refused.stderr

    auth = base64.b64encode(f"{TEST_USERNAME}:{TEST_PASSWORD}".encode()).decode()
    config = _write_docker_config(
        tmp_path / "config.json", {"auths": {basic_registry.host: {"auth": auth}}}
    )
    result = ocync(
        "-vv", "copy", "--json", seeded_registry.reference, target,
        "--docker-config", str(config),
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert auth not in result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "copied"
    with basic_registry.client() as http:
        head = http.head("/v2/team/app/manifests/v1", headers=ACCEPT)
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == seeded_registry.digest

    # The same file found through $DOCKER_CONFIG, without the flag.
    home = tmp_path / "docker-home-2"
    home.mkdir()
    (home / "config.json").write_text(config.read_text())
    again = ocync(
        "copy", "--json", seeded_registry.reference, f"{basic_registry.host}/team/two:v1",
        env={**env, "DOCKER_CONFIG": str(home)},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_docker_config_wrong_password_exit_4(seeded_registry, basic_registry, tmp_path, env):
    wrong = "not-the-ocync-password"
    auth = base64.b64encode(f"{TEST_USERNAME}:{wrong}".encode()).decode()
    config = _write_docker_config(
        tmp_path / "config.json", {"auths": {basic_registry.host: {"auth": auth}}}
    )
    result = ocync(
        "copy", seeded_registry.reference, f"{basic_registry.host}/team/app:v1",
        "--docker-config", str(config),
        env=env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert wrong not in result.stdout + result.stderr
    assert auth not in result.stdout + result.stderr


_HELPER = """#!/bin/sh
# A docker credential helper for the tests: answers `get` for one server, logs each call.
server=$(cat)
echo "$1 $server" >> "{log}"
if [ "$1" = "get" ] && [ "$server" = "{server}" ]; then
    printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server"
    exit 0
fi
echo "credentials not found in native keychain"
exit 1
"""


def test_docker_config_cred_helper(seeded_registry, basic_registry, tmp_path, env) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper_log = tmp_path / "helper.log"
    helper = bin_dir / "docker-credential-ocynctest"
    helper.write_text(
        _HELPER.format(
            log=helper_log, server=basic_registry.host, user=TEST_USERNAME, secret=TEST_PASSWORD
        )
    )
    helper.chmod(0o755)
    config = _write_docker_config(
        tmp_path / "config.json",
        # The auths entry is wrong on purpose: the helper must win.
        {
            "credHelpers": {basic_registry.host: "ocynctest"},
            "auths": {basic_registry.host: {"auth": base64.b64encode(b"x:y").decode()}},
        },
    )
    helper_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    result = ocync(
        "-vv", "copy", "--json", seeded_registry.reference, f"{basic_registry.host}/helped/app:v1",
        "--docker-config", str(config),
        env=helper_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "copied"
    calls = helper_log.read_text().splitlines()
    assert calls == [f"get {basic_registry.host}"]  # looked up once, for the target only
    with basic_registry.client() as http:
        head = http.head("/v2/helped/app/manifests/v1", headers=ACCEPT)
        assert head.headers["Docker-Content-Digest"] == seeded_registry.digest


def test_missing_cred_helper_is_an_auth_error(seeded_registry, basic_registry, tmp_path, env):
    config = _write_docker_config(
        tmp_path / "config.json", {"credHelpers": {basic_registry.host: "nosuchhelper"}}
    )
    result = ocync(
        "copy", seeded_registry.reference, f"{basic_registry.host}/x/app:v1",
        "--docker-config", str(config),
        env=env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "docker-credential-nosuchhelper" in result.stderr


def test_malformed_docker_config_is_bad_input(seeded_registry, basic_registry, tmp_path, env):
    config = tmp_path / "config.json"
    # Broken JSON around a real secret: the error must name the file, not quote it.
    broken = json.dumps({"auths": {basic_registry.host: {"password": TEST_PASSWORD}}})[:-3]
    config.write_text(broken)
    result = ocync(
        "copy", seeded_registry.reference, f"{basic_registry.host}/x/app:v1",
        "--docker-config", str(config),
        env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert str(config) in result.stderr
    assert "not valid JSON" in result.stderr


def test_dest_creds_never_printed(seeded_registry, basic_registry, env) -> None:
    creds = f"{TEST_USERNAME}:{TEST_PASSWORD}"
    result = ocync(
        "-vv", "copy", seeded_registry.reference, f"{basic_registry.host}/flag/app:v1",
        "--dest-creds", creds,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"copied .* -> .*/flag/app:v1 sha256:", result.stdout)


def test_plugins_lists_every_builtin_with_the_hosts_it_claims():
    shown = ocync("plugins", env=dict(os.environ)).stdout
    expected = {
        "ocync_oci": "any OCI Distribution registry",
        "ocync_ecr": "<account>.dkr.ecr.<region>.amazonaws.com",
        "ocync_dockerhub": "docker.io",
        "ocync_ghcr": "ghcr.io",
        "ocync_gar": "-docker.pkg.dev",
        "ocync_acr": ".azurecr.io",
        "ocync_quay": "quay.io",
        "ocync_chainguard": "cgr.dev",
    }
    blocks = dict(re.findall(r"^(ocync_\w+) .*\n    hosts: (.*)$", shown, flags=re.MULTILINE))
    missing = {name: host for name, host in expected.items() if host not in blocks.get(name, "")}
    assert not missing, f"`ocync plugins` does not show these hosts: {missing}\n{shown}"
