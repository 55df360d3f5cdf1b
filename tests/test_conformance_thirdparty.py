"""A third-party plugin, pip-installed next to ocync's wheel in a fresh venv, works and conforms.

This is a plugin author's setup: ``pip install "ocync[conformance]" ocync-tiny`` in a new virtual
environment, then ``ocync`` and ``python -m pytest`` from the plugin's own directory. ocync and
ocync-tiny come from wheels built here, their dependencies from the package index through pip
(whose cache makes reruns faster); nothing of the checkout is on the venv's path.

Slow by nature (a venv and a full ``pip install``): one venv for the whole module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tinyplugin import CHECKOUT, TINY_SOURCE, build_ocync_wheel, build_tiny_wheel

from ocync_conformance.fixtures import SeededRegistry
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
# What a developer's shell may carry that would leak the checkout or its venv into the new one.
_LEAKY = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "TINY_HOSTS", "DOCKER_CONFIG"}
_KEPT_OCYNC = {"OCYNC_DOCKER_REGISTRY"}  # where the kit finds docker-registry, if set


@dataclass
class FreshVenv:
    """A new virtual environment with ocync[conformance] and ocync-tiny, installed from wheels."""

    root: Path
    docker_config: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """The current environment minus anything naming the checkout, this venv's bin first."""
        own_venv = Path(sys.prefix)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _LEAKY and (not k.startswith("OCYNC_") or k in _KEPT_OCYNC)
        }
        path = [p for p in env.get("PATH", "").split(os.pathsep) if not _inside(Path(p), own_venv)]
        env["PATH"] = os.pathsep.join([str(self.root / "bin"), *path])
        env["DOCKER_CONFIG"] = str(self.docker_config)  # never the developer's ~/.docker
        env.update(extra)
        return env

    def run(
        self, *argv: str | Path, cwd: Path, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _inside(path: Path, parent: Path) -> bool:
    return path.resolve().is_relative_to(parent.resolve())


def _checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (
        f"{' '.join(done.args[:4])} ... exited {done.returncode}\n"
        f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    )
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshVenv]:
    work = tmp_path_factory.mktemp("fresh-venv")
    fresh = FreshVenv(root=work / "venv", docker_config=work / "docker-home")
    fresh.docker_config.mkdir()
    clock = time.monotonic()
    ocync_wheel = build_ocync_wheel(work)
    tiny_wheel = build_tiny_wheel(work)
    fresh.timings["build wheels"] = time.monotonic() - clock

    clock = time.monotonic()
    # The base interpreter, not this venv's: venv resolves it itself from sys.executable.
    _checked(fresh.run(sys.executable, "-m", "venv", fresh.root, cwd=work))
    fresh.timings["create venv"] = time.monotonic() - clock

    clock = time.monotonic()
    install = fresh.run(
        fresh.python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        # Byte-compiling botocore at install time doubles the install; imports compile what
        # they use anyway.
        "--no-compile",
        f"{ocync_wheel}[conformance]",
        tiny_wheel,
        cwd=work,
        timeout=900,
    )
    _checked(install)
    fresh.timings["pip install ocync[conformance] + ocync-tiny"] = time.monotonic() - clock
    print(
        "fresh venv: " + ", ".join(f"{step} {took:.1f} s" for step, took in fresh.timings.items())
    )
    yield fresh


def test_ocync_and_plugin_come_from_the_venv_not_the_checkout(venv: FreshVenv, tmp_path: Path):
    code = (
        "import json, sys, sysconfig\n"
        "import ocync_core, ocync_conformance, ocync_oci, ocync_tiny\n"
        "mods = (ocync_core, ocync_conformance, ocync_oci, ocync_tiny)\n"
        "print(json.dumps({'site': sysconfig.get_paths()['purelib'], 'path': sys.path,\n"
        "                  'files': {m.__name__: m.__file__ for m in mods}}))\n"
    )
    seen = json.loads(_checked(venv.run(venv.python, "-c", code, cwd=tmp_path)).stdout)
    site = Path(seen["site"])
    assert _inside(site, venv.root), f"site-packages {site} is not the fresh venv's"
    for module, file in seen["files"].items():
        assert _inside(Path(file), site), f"{module} imported from {file}, not from {site}"
    leaked = [p for p in seen["path"] if p and _inside(Path(p), CHECKOUT)]
    assert not leaked, f"the checkout is on the fresh venv's sys.path: {leaked}"


def test_ocync_plugins_lists_the_third_party_plugin(venv: FreshVenv, tmp_path: Path):
    listed = _checked(venv.run(venv.root / "bin" / "ocync", "plugins", "--json", cwd=tmp_path))
    by_name = {info["name"]: info for info in json.loads(listed.stdout)}
    assert set(by_name) >= {"ocync_oci", "ocync_ecr", "tiny"}
    tiny = by_name["tiny"]
    assert tiny["version"] == "0.3.1"
    assert tiny["builtin"] is False
    assert tiny["kinds"] == ["tiny"]
    assert {"ocync_registry_kind", "ocync_existence_checker", "ocync_upload_strategy"} <= set(
        tiny["hooks"]
    )
    text = _checked(venv.run(venv.root / "bin" / "ocync", "plugins", cwd=tmp_path)).stdout
    assert "tiny 0.3.1 [third-party] kinds: tiny" in text


def test_sync_detects_the_plugin_for_its_host(
    venv: FreshVenv,
    seeded_registry: SeededRegistry,
    target_registry: RegistryProcess,
    tmp_path: Path,
):
    config = tmp_path / "mirror.yaml"
    config.write_text(
        json.dumps(
            {
                "global": {"cache": False},
                # No `kind:`: the tiny plugin must claim the target from its host alone.
                "registries": {
                    "src": {"url": seeded_registry.host},
                    "dst": {"url": target_registry.host},
                },
                "defaults": {"source": "src", "targets": "dst"},
                "mappings": [{"from": "demo/app", "to": "tiny/app"}],
            }
        )
    )
    log = tmp_path / "tiny.log"
    synced = venv.run(
        venv.root / "bin" / "ocync",
        "sync",
        "-c",
        config,
        "--json",
        cwd=tmp_path,
        TINY_HOSTS=target_registry.host,
        OCYNC_TINY_LOG=str(log),
    )
    _checked(synced)
    report = json.loads(synced.stdout)
    assert report["totals"]["synced"] == 1 and report["totals"]["failed"] == 0, report
    (image,) = report["images"]
    assert image["digest"] == seeded_registry.digest

    blobs = set(seeded_registry.image.blob_digests)
    assert log.exists(), "the tiny plugin's existence checker was never used for its registry"
    lines = log.read_text().splitlines()
    checked: set[str] = set()
    for line in lines:
        word, repository, *digests = line.split()
        assert (word, repository) == ("exists", "tiny/app"), line
        checked.update(digests)
    assert checked == blobs, f"the tiny checker was asked about {checked}, expected {blobs}"

    with httpx.Client(base_url=target_registry.url) as http:
        head = http.head("/v2/tiny/app/manifests/v1", headers=ACCEPT)
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == seeded_registry.digest
        for digest in blobs:
            assert http.head(f"/v2/tiny/app/blobs/{digest}").status_code == 200, digest


def test_plugin_passes_the_conformance_suite_in_the_fresh_venv(venv: FreshVenv, tmp_path: Path):
    # The plugin's own test directory, run from a copy as its CI would, with the venv's pytest.
    shutil.copytree(TINY_SOURCE / "tests", tmp_path / "tests")
    clock = time.monotonic()
    run = venv.run(
        venv.python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        # Its own temporary root: pytest prunes old ones in the shared default location.
        f"--basetemp={tmp_path / 'basetemp'}",
        "-rfEs",
        "tests",
        cwd=tmp_path,
        timeout=600,
    )
    took = time.monotonic() - clock
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(f"ocync-tiny conformance in the fresh venv ({took:.1f} s): {summary}")
    # "3 passed, 1 error" / "2 errors": one key per outcome, singular.
    counts = {kind.rstrip("s"): int(n) for n, kind in re.findall(r"(\d+) (\w+)", summary)}
    assert run.returncode == 0 and counts.get("passed", 0) > 0, (
        f"the ocync-tiny conformance run failed: {summary}\n{run.stdout[-8000:]}\n{run.stderr}"
    )
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0, summary
