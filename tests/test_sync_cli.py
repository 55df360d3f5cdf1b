"""The config-facing commands: tags, schema, expand, and the progress display."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import yaml

from ocync_conformance.corpus import build_corpus

OCYNC = [sys.executable, "-m", "ocync_core"]


def ocync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OCYNC, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_tags_previews_a_filter(registry):
    corpus = build_corpus(repositories=1, tags=4)
    corpus.push(registry.url)
    repo = f"{registry.host}/corpus/app00"
    everything = ocync("tags", repo)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.split() == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    newest = ocync("tags", repo, "--semver", ">=1.1", "--sort", "semver", "--latest", "2")
    assert newest.stdout.split() == ["1.2.0", "1.3.0"]
    excluded = ocync("tags", repo, "--glob", "1.*", "--exclude", "1.0.*")
    assert excluded.stdout.split() == ["1.1.0", "1.2.0", "1.3.0"]
    bad = ocync("tags", repo, "--latest", "2")
    assert bad.returncode == 3 and "sort" in bad.stderr


def test_schema_is_json_schema_of_the_config():
    result = ocync("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    text = json.dumps(schema)
    for key in ("registries", "target_groups", "mappings", "immutable_tags", "max_concurrent"):
        assert key in text


def test_expand_resolves_variables_and_redacts_secrets(tmp_path: Path):
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "registries:\n"
        "  src: { url: '${SRC_HOST}', credentials: { username: bob, password: '${SRC_PASS}' } }\n"
        "  dst: { url: '${DST_HOST:-127.0.0.1:5001}' }\n"
        "defaults: { source: src, targets: dst }\n"
        "mappings: [ { from: team/app } ]\n"
    )
    env = {"SRC_HOST": "127.0.0.1:5000", "SRC_PASS": "hunter2-secret"}
    redacted = ocync("expand", str(config), env=env)
    assert redacted.returncode == 0, redacted.stderr
    assert "hunter2-secret" not in redacted.stdout
    doc = yaml.safe_load(redacted.stdout)
    assert doc["registries"]["src"]["url"] == "127.0.0.1:5000"
    assert doc["registries"]["dst"]["url"] == "127.0.0.1:5001"
    shown = ocync("expand", str(config), "--show-secrets", env=env)
    assert "hunter2-secret" in shown.stdout

    missing = ocync("expand", str(config), env={"SRC_PASS": "x"})
    assert missing.returncode == 3 and "SRC_HOST" in missing.stderr


def _sync_config(tmp_path: Path, source: str, target: str) -> Path:
    config = tmp_path / "m.yaml"
    config.write_text(
        json.dumps(
            {
                "global": {"cache": False},
                "registries": {"src": {"url": source}, "dst": {"url": target}},
                "defaults": {"source": "src", "targets": "dst"},
                "mappings": [{"from": "corpus/app00"}, {"from": "corpus/app01"}],
            }
        )
    )
    return config


def test_progress_shows_on_a_terminal_only(registry, target_registry, tmp_path: Path):
    build_corpus(repositories=2, tags=2).push(registry.url)
    config = _sync_config(tmp_path, registry.host, target_registry.host)

    # A terminal: the live display draws (and clears) itself on stderr.
    pid, fd = pty.fork()
    if pid == 0:  # the child: run ocync with the pty as its terminal
        os.environ["COLUMNS"] = "120"
        os.execv(sys.executable, [*OCYNC, "sync", "-c", str(config), "--dry-run"])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    text = output.decode(errors="replace")
    assert "\x1b[" in text  # the live display used the terminal
    assert "would sync" in text

    # Not a terminal: plain lines, no control sequences.
    piped = ocync("sync", "-c", str(config))
    assert piped.returncode == 0, piped.stderr
    assert "\x1b[" not in piped.stdout + piped.stderr
    assert piped.stdout.count("synced ") == 4
