"""Docker config lookup with real credential-helper executables on PATH."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from ocync_core.auth import Credentials, DockerConfig, default_config_path
from ocync_core.errors import AuthenticationError, ConfigError

SECRET = "s3cr3t-never-shown"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_helper(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def helpers(tmp_path: Path) -> dict[str, str]:
    """A bin dir with helpers; returns the env for DockerConfig (PATH first, then the system)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    found = '{{"ServerURL":"x","Username":"{}","Secret":"' + SECRET + '"}}'
    write_helper(
        bin_dir,
        "testhelper",
        f"""read server
echo "$1 $server" >> {log}
case "$server" in
  reg.example.com) echo '{found.format("helper-user")}' ;;
  https://index.docker.io/v1/) echo '{found.format("hub-user")}' ;;
  tokens.example.com) echo '{found.format("<token>")}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
""",
    )
    write_helper(
        bin_dir,
        "failing",
        f'echo "{SECRET}"\necho "keychain is locked" >&2\nexit 1\n',
    )
    write_helper(bin_dir, "slow", "exec sleep 30\n")
    write_helper(bin_dir, "slowchild", "sleep 30\necho done\n")
    write_helper(bin_dir, "badjson", f'echo "not json {SECRET}"\n')
    write_helper(bin_dir, "nosecret", 'echo \'{"Username": "u"}\'\n')
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "LOG": str(log)}


def config_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


# -- auths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "reg.example.com",
        "https://reg.example.com",
        "https://reg.example.com/v1/",
        "http://REG.example.com/",
    ],
)
def test_auths_base64_key_variants(tmp_path: Path, key: str) -> None:
    config = DockerConfig(config_file(tmp_path, {"auths": {key: {"auth": b64(f"bob:{SECRET}")}}}))
    assert config.credentials_for("reg.example.com") == Credentials("bob", SECRET)
    assert config.credentials_for("other.example.com") is None


def test_auths_split_form_and_identity_token(tmp_path: Path) -> None:
    config = DockerConfig(
        config_file(
            tmp_path,
            {
                "auths": {
                    "a.example.com": {"username": "alice", "password": SECRET},
                    "b.example.com": {"auth": b64("bob:"), "identitytoken": "refresh-1"},
                    "c.example.com": {},
                }
            },
        )
    )
    assert config.credentials_for("a.example.com") == Credentials("alice", SECRET)
    assert config.credentials_for("b.example.com") == Credentials("bob", "", "refresh-1")
    assert config.credentials_for("c.example.com") is None


def test_auths_with_port(tmp_path: Path) -> None:
    config = DockerConfig(
        config_file(tmp_path, {"auths": {"localhost:5000": {"auth": b64("u:p")}}})
    )
    assert config.credentials_for("localhost:5000") == Credentials("u", "p")
    assert config.credentials_for("localhost") is None


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_key(tmp_path: Path, host: str) -> None:
    config = DockerConfig(
        config_file(
            tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": b64(f"hub:{SECRET}")}}}
        )
    )
    assert config.credentials_for(host) == Credentials("hub", SECRET)


def test_bad_base64_auth_does_not_echo_it(tmp_path: Path) -> None:
    config = DockerConfig(config_file(tmp_path, {"auths": {"r.io": {"auth": "!!" + SECRET}}}))
    with pytest.raises(AuthenticationError) as info:
        config.credentials_for("r.io")
    assert SECRET not in str(info.value)
    assert "r.io" in str(info.value)


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert DockerConfig(tmp_path / "nope.json").credentials_for("r.io") is None


def test_invalid_json_is_config_error_without_content(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"r.io": {"auth": "' + SECRET)
    with pytest.raises(ConfigError) as info:
        DockerConfig(path).credentials_for("r.io")
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


def test_default_path_honours_docker_config_env(tmp_path: Path) -> None:
    assert default_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert default_config_path({}) == Path.home() / ".docker" / "config.json"
    config_file(tmp_path, {"auths": {"r.io": {"auth": b64("u:p")}}})
    assert DockerConfig(env={"DOCKER_CONFIG": str(tmp_path)}).credentials_for("r.io") == (
        Credentials("u", "p")
    )


# -- helpers ----------------------------------------------------------------------------------


def test_cred_helpers_win_over_store_and_auths(tmp_path: Path, helpers: dict[str, str]) -> None:
    data = {
        "credHelpers": {"reg.example.com": "testhelper"},
        "credsStore": "failing",
        "auths": {"reg.example.com": {"auth": b64("file-user:file-pass")}},
    }
    config = DockerConfig(config_file(tmp_path, data), env=helpers)
    assert config.credentials_for("reg.example.com") == Credentials("helper-user", SECRET)
    assert Path(helpers["LOG"]).read_text() == "get reg.example.com\n"


def test_creds_store_wins_over_auths(tmp_path: Path, helpers: dict[str, str]) -> None:
    data = {
        "credsStore": "testhelper",
        "auths": {"reg.example.com": {"auth": b64("file-user:file-pass")}},
    }
    config = DockerConfig(config_file(tmp_path, data), env=helpers)
    assert config.credentials_for("reg.example.com") == Credentials("helper-user", SECRET)


def test_helper_not_found_falls_through_to_auths(tmp_path: Path, helpers: dict[str, str]) -> None:
    data = {
        "credsStore": "testhelper",
        "auths": {"elsewhere.example.com": {"auth": b64("file-user:file-pass")}},
    }
    config = DockerConfig(config_file(tmp_path, data), env=helpers)
    assert config.credentials_for("elsewhere.example.com") == Credentials("file-user", "file-pass")
    assert config.credentials_for("nothing.example.com") is None


def test_helper_for_docker_hub_gets_the_hub_url(tmp_path: Path, helpers: dict[str, str]) -> None:
    config = DockerConfig(config_file(tmp_path, {"credsStore": "testhelper"}), env=helpers)
    assert config.credentials_for("registry-1.docker.io") == Credentials("hub-user", SECRET)
    assert Path(helpers["LOG"]).read_text() == "get https://index.docker.io/v1/\n"


def test_helper_identity_token(tmp_path: Path, helpers: dict[str, str]) -> None:
    config = DockerConfig(config_file(tmp_path, {"credsStore": "testhelper"}), env=helpers)
    creds = config.credentials_for("tokens.example.com")
    assert creds == Credentials("", "", identity_token=SECRET)


@pytest.mark.parametrize(
    ("helper", "expect"),
    [
        ("failing", "exit code 1: keychain is locked"),
        ("badjson", "did not answer with JSON"),
        ("nosecret", "without a Username and Secret"),
        ("absent", "not found on PATH"),
    ],
)
def test_helper_errors_name_helper_and_host_not_secrets(
    tmp_path: Path, helpers: dict[str, str], helper: str, expect: str
) -> None:
    config = DockerConfig(
        config_file(tmp_path, {"credHelpers": {"reg.example.com": helper}}), env=helpers
    )
    with pytest.raises(AuthenticationError) as info:
        config.credentials_for("reg.example.com")
    message = str(info.value)
    assert expect in message
    assert f"docker-credential-{helper}" in message
    assert "reg.example.com" in message
    assert SECRET not in message
    assert info.value.exit_code == 4


@pytest.mark.parametrize("helper", ["slow", "slowchild"])
def test_helper_timeout(tmp_path: Path, helpers: dict[str, str], helper: str) -> None:
    config = DockerConfig(
        config_file(tmp_path, {"credsStore": helper}), env=helpers, helper_timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=r"no answer within 0\.3 s") as info:
        config.credentials_for("reg.example.com")
    # The helper's whole process group is killed: we do not wait for its `sleep 30`.
    assert time.monotonic() - started < 5
    assert "docker-credential-" + helper in str(info.value)


def test_from_mapping() -> None:
    config = DockerConfig.from_mapping({"auths": {"r.io": {"username": "u", "password": "p"}}})
    assert config.credentials_for("r.io") == Credentials("u", "p")
