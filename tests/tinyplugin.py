"""Build and pip-install the sample third-party plugin ``ocync-tiny`` (tests/fixtures/ocync_tiny).

Real packaging, no mocks: the fixture source is built into a wheel with pip and installed with
``pip install --target``; a subprocess with that directory on ``PYTHONPATH`` then sees the
plugin through its ``ocync`` entry point, exactly as after ``pip install ocync-tiny``.
`build_ocync_wheel` builds ocync itself, for tests that install both into a fresh venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "CHECKOUT",
    "TINY_SOURCE",
    "build_and_install_tiny",
    "build_ocync_wheel",
    "build_tiny_wheel",
    "run_python",
    "tiny_env",
]

TINY_SOURCE = Path(__file__).parent / "fixtures" / "ocync_tiny"
CHECKOUT = Path(__file__).resolve().parent.parent
# Build leftovers and local state: a stale build/lib would ship modules deleted since.
_NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def build_and_install_tiny(tmp_path: Path) -> Path:
    """Build the ocync-tiny wheel and install it under `tmp_path`; return the install dir.

    Put the returned directory on ``PYTHONPATH`` (see `tiny_env`) to make the plugin visible.
    """
    wheel = build_tiny_wheel(tmp_path)
    target = tmp_path / "site"
    _run([*_PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    return target


def build_tiny_wheel(tmp_path: Path) -> Path:
    """Build the ocync-tiny wheel into ``tmp_path/wheels``; return its path."""
    return _build_wheel(TINY_SOURCE, tmp_path / "ocync_tiny_src", tmp_path / "wheels", "ocync_tiny")


def build_ocync_wheel(tmp_path: Path) -> Path:
    """Build the ocync wheel from this checkout into ``tmp_path/wheels``; return its path."""
    return _build_wheel(CHECKOUT, tmp_path / "ocync_src", tmp_path / "wheels", "ocync")


def _build_wheel(sources: Path, copy: Path, wheels: Path, name: str) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(sources, copy, ignore=_NOT_SOURCES)
    # An absolute path: pip reads a bare relative name such as "src" as a project to download.
    # --no-build-isolation: use this venv's setuptools, so no network is needed.
    _run([*_PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(copy)])
    (wheel,) = wheels.glob(f"{name}-*.whl")
    return wheel


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
