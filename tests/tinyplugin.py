"""Build and pip-install the sample third-party plugin ``ocync-tiny`` (tests/fixtures/ocync_tiny).

Real packaging, no mocks: the fixture source is built into a wheel with pip and installed with
``pip install --target``; a subprocess with that directory on ``PYTHONPATH`` then sees the
plugin through its ``ocync`` entry point, exactly as after ``pip install ocync-tiny``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["TINY_SOURCE", "build_and_install_tiny", "run_python", "tiny_env"]

TINY_SOURCE = Path(__file__).parent / "fixtures" / "ocync_tiny"


def build_and_install_tiny(tmp_path: Path) -> Path:
    """Build the ocync-tiny wheel and install it under `tmp_path`; return the install dir.

    Put the returned directory on ``PYTHONPATH`` (see `tiny_env`) to make the plugin visible.
    """
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "ocync_tiny_src"
    shutil.copytree(TINY_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    wheels = tmp_path / "wheels"
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # --no-build-isolation: use the venv's setuptools, so no network is needed.
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("ocync_tiny-*.whl")
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    return target


def tiny_env(site: Path, **extra: str) -> dict[str, str]:
    """The current environment with `site` first on PYTHONPATH and no inherited allow-list."""
    env = {k: v for k, v in os.environ.items() if k not in ("OCYNC_PLUGINS", "TINY_HOSTS")}
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> str:
    """Run `code` in a fresh interpreter of this venv; return its stdout (fails loudly)."""
    return _run([sys.executable, "-c", code], env=env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:6])} ... exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout
