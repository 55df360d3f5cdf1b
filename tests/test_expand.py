"""`ocync expand` prints the resolved configuration with every secret as ``***``.

Secrets are the core's (`credentials.password`, `token`), whatever a plugin adds typed as a
secret (`SecretStr`, `SecretBytes`, nested in a model or a list), and plugin keys typed as plain
text but named like a secret (`client_secret`, `refresh_token`), wherever their value came
from: the file, a ``${VAR}``, a ``${VAR:-default}``. `--show-secrets` shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, SecretBytes, SecretStr

from ocync_core.config import load_config
from ocync_core.errors import ConfigError
from ocync_core.hookspecs import hookimpl
from ocync_core.plugins import Plugins

OCYNC = [sys.executable, "-m", "ocync_core"]

PASSWORD = "pw-from-env-7Hq2Lm"
DEFAULT_TOKEN = "token-from-default-Zp4Kd9"
LITERAL_TOKEN = "literal-token-Rb8Xw1"
NUMERIC_PASSWORD = "987654321"
API_KEY = "api-key-Ux6Tn3"
CLIENT_SECRET = "client-secret-Qe5Vy7"
SIGNING_KEYS = ["signing-key-one-Aa1", "signing-key-two-Bb2"]
BLOB = "secret-bytes-Cc3Dd4"
REFRESH_TOKEN = "refresh-token-Jj9Hh8"
PLUGIN_SECRETS = [API_KEY, CLIENT_SECRET, *SIGNING_KEYS, BLOB, REFRESH_TOKEN]


def ocync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCYNC_")}
    return subprocess.run(
        [*OCYNC, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mirror.yaml"
    path.write_text(textwrap.dedent(text))
    return path


CORE = """\
registries:
  src:
    url: ${SRC_HOST}
    credentials: { username: bob, password: "${SRC_PASSWORD}" }
  hub:
    url: registry.example.test
    token: "${HUB_TOKEN:-token-from-default-Zp4Kd9}"
  gar:
    url: europe-docker.pkg.dev
    token: literal-token-Rb8Xw1
  local:
    url: 127.0.0.1:5000
    credentials: { username: 42, password: 987654321 }
defaults: { source: src, targets: [hub, gar, local] }
mappings: [ { from: team/app } ]
"""


def test_cli_expand_redacts_core_secrets_from_files_variables_and_defaults(tmp_path):
    config = write(tmp_path, CORE)
    env = {"SRC_HOST": "src.example.test", "SRC_PASSWORD": PASSWORD}
    secrets = [PASSWORD, DEFAULT_TOKEN, LITERAL_TOKEN, NUMERIC_PASSWORD]

    redacted = ocync("expand", str(config), env=env)
    assert redacted.returncode == 0, redacted.stderr
    for secret in secrets:
        assert secret not in redacted.stdout + redacted.stderr, f"{secret} shown by expand"
    doc = yaml.safe_load(redacted.stdout)
    registries = doc["registries"]
    assert registries["src"]["url"] == "src.example.test"  # variables are resolved
    assert registries["src"]["credentials"] == {"username": "bob", "password": "***"}
    assert registries["hub"]["token"] == registries["gar"]["token"] == "***"
    assert registries["local"]["credentials"] == {"username": "42", "password": "***"}

    shown = ocync("expand", str(config), "--show-secrets", env=env)
    assert shown.returncode == 0, shown.stderr
    revealed = yaml.safe_load(shown.stdout)["registries"]
    assert revealed["src"]["credentials"]["password"] == PASSWORD
    assert revealed["hub"]["token"] == DEFAULT_TOKEN
    assert revealed["gar"]["token"] == LITERAL_TOKEN
    assert revealed["local"]["credentials"]["password"] == NUMERIC_PASSWORD


class AcmeClient(BaseModel):
    client_id: str
    client_secret: SecretStr


class AcmePlugin:
    """A plugin whose registry keys hold secrets in every shape a model can give them."""

    OCYNC_KINDS = ("acme",)

    class Keys(BaseModel):
        acme_region: str | None = None
        acme_api_key: SecretStr | None = None
        acme_client: AcmeClient | None = None
        acme_signing_keys: list[SecretStr] = []
        acme_blob: SecretBytes | None = None
        acme_refresh_token: str | None = None  # plain text, but its name says secret
        acme_token_ttl: int = 60

    @hookimpl
    def ocync_registry_config_model(self) -> type[BaseModel]:
        return self.Keys


@pytest.fixture(scope="module")
def acme() -> Plugins:
    return Plugins.load(allow=[], extra=[AcmePlugin()])


ACME = """\
registries:
  src: { url: cgr.dev }
  vault:
    url: acme.example.test
    kind: acme
    acme_region: eu-west-9
    acme_api_key: ${ACME_API_KEY}
    acme_client: { client_id: mirror-app, client_secret: "${ACME_CLIENT_SECRET}" }
    acme_signing_keys: [signing-key-one-Aa1, "${SECOND_KEY}"]
    acme_blob: secret-bytes-Cc3Dd4
    acme_refresh_token: ${REFRESH}
defaults: { source: src, targets: vault }
mappings: [ { from: chainguard/static } ]
"""
ACME_ENV = {
    "ACME_API_KEY": API_KEY,
    "ACME_CLIENT_SECRET": CLIENT_SECRET,
    "SECOND_KEY": SIGNING_KEYS[1],
    "REFRESH": REFRESH_TOKEN,
}


def test_expand_redacts_every_secret_a_plugin_adds(tmp_path, acme):
    config = load_config(write(tmp_path, ACME), acme, env=ACME_ENV)
    shown = config.expand()
    text = json.dumps(shown)
    for secret in PLUGIN_SECRETS:
        assert secret not in text, f"{secret} shown by expand"
    vault = shown["registries"]["vault"]
    assert vault["acme_api_key"] == "***"
    assert vault["acme_client"] == {"client_id": "mirror-app", "client_secret": "***"}
    assert vault["acme_signing_keys"] == ["***", "***"]
    assert vault["acme_blob"] == "***"
    assert vault["acme_refresh_token"] == "***"
    # What is no secret stays readable.
    assert vault["acme_region"] == "eu-west-9" and vault["acme_token_ttl"] == 60
    assert shown["registries"]["src"]["url"] == "cgr.dev"

    revealed = config.expand(redact=False)["registries"]["vault"]
    assert revealed["acme_api_key"] == API_KEY
    assert revealed["acme_client"]["client_secret"] == CLIENT_SECRET
    assert revealed["acme_signing_keys"] == SIGNING_KEYS
    assert revealed["acme_blob"] == BLOB
    assert revealed["acme_refresh_token"] == REFRESH_TOKEN


def test_names_of_aliases_and_groups_are_never_mistaken_for_secrets(tmp_path, acme):
    text = """\
    registries:
      src: { url: cgr.dev }
      token-mirror: { url: acme.example.test }
    target_groups: { secret-targets: [token-mirror] }
    defaults: { source: src, targets: secret-targets }
    mappings: [ { from: chainguard/static, to: tokens/static } ]
    """
    shown = load_config(write(tmp_path, text), acme, env={}).expand()
    assert shown["target_groups"] == {"secret-targets": ["token-mirror"]}
    assert shown["registries"]["token-mirror"]["url"] == "acme.example.test"
    assert shown["mappings"][0]["to"] == "tokens/static"


@pytest.mark.parametrize(
    "keys",
    [
        "acme_token_ttl: refresh-token-Jj9Hh8",  # a wrong value under a key named like a secret
        "acme_token_ttl: ${REFRESH}",
        "acme_client: { client_id: x, client_secret: { a: client-secret-Qe5Vy7 } }",
    ],
)
def test_plugin_secrets_never_appear_in_config_errors(tmp_path, acme, keys):
    text = ACME.split("    acme_region")[0] + f"    {keys}\n" + ACME[ACME.index("defaults:") :]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), acme, env=ACME_ENV)
    message = str(caught.value)
    assert "registries.vault.acme_" in message  # the problem is reported, at its key
    for secret in PLUGIN_SECRETS:
        assert secret not in message


def test_cli_expand_shows_the_ecr_keys_which_are_identifiers_not_secrets(tmp_path):
    config = write(
        tmp_path,
        """\
        registries:
          src: { url: cgr.dev }
          ecr:
            url: 123456789012.dkr.ecr.us-east-1.amazonaws.com
            auth_type: ecr
            aws_profile: mirror-role
            create_repositories: true
            repository_encryption: KMS
            kms_key: arn:aws:kms:us-east-1:123456789012:key/abcd
        defaults: { source: src, targets: ecr }
        mappings: [ { from: chainguard/static } ]
        """,
    )
    result = ocync("expand", str(config), env={})
    assert result.returncode == 0, result.stderr
    ecr = yaml.safe_load(result.stdout)["registries"]["ecr"]
    assert ecr["aws_profile"] == "mirror-role"
    assert ecr["kms_key"] == "arn:aws:kms:us-east-1:123456789012:key/abcd"
    assert "***" not in result.stdout  # nothing here is a secret: ECR credentials come from AWS
