"""The container image's Dockerfile, checked statically (the tests never run a Docker daemon).

The Dockerfile is parsed into stages of instructions; the checks read the final stage (what
ships) and the build context that `.dockerignore` leaves.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ocync_core.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Packages that compile or fetch code; none belongs in the image that ships.
BUILD_TOOLS = (
    "gcc",
    "g++",
    "clang",
    "make",
    "build-essential",
    "cmake",
    "git",
    "cargo",
    "rustc",
    "libc6-dev",
    "python3-dev",
)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [i.value for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    """Instructions one per line: comments dropped, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The ARG defaults declared before the first FROM, and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            words = value.split()
            name = None
            if len(words) >= 3 and words[-2].upper() == "AS":
                name, words = words[-1], words[:-2]
            stages.append(Stage(base=_expand(words[-1], global_args), name=name))
        elif not stages:
            if keyword == "ARG":
                arg_name, _, default = value.partition("=")
                global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, value))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether `.dockerignore` keeps `path` (or a parent of it) out of the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatch(prefix.split("/")[-1], pattern[3:]):
                return True
    return False


def _dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_is_built_in_two_stages_on_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "the Dockerfile must build in one stage and ship from another"
    final = stages[-1]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", final.base), (
        f"the final stage must start from a slim official Python image, not {final.base!r}"
    )
    assert stages[0].base == final.base, (
        "builder and final stage must share the base: the venv's interpreter is a symlink to it"
    )


def test_the_final_stage_runs_as_a_non_root_user(final: Stage) -> None:
    users = final.values("USER")
    assert users, "the final stage never sets USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, (
        f"USER {users[-1]!r}: a numeric non-zero uid lets Kubernetes' runAsNonRoot verify it"
    )
    created = " ".join(final.values("RUN"))
    assert f"--uid {uid}" in created, f"no user with uid {uid} is created in the final stage"
    if gid:
        assert f"--gid {gid}" in created, f"no group with gid {gid} is created in the final stage"


def test_the_final_stage_installs_no_build_tools(final: Stage) -> None:
    for command in final.values("RUN"):
        words = set(shlex.split(command.replace("&&", " ")))
        assert not words & set(BUILD_TOOLS), (
            f"the final stage installs build tools {sorted(words & set(BUILD_TOOLS))}: {command}"
        )
        assert not re.search(r"\b(apt-get|apt|apk|pip|pip3)\s+install\b", command), (
            f"the final stage installs packages; install in the builder and copy: {command}"
        )
    copies = final.values("COPY")
    assert any(c.startswith("--from=") for c in copies), (
        "the final stage copies nothing from the builder: where does ocync come from?"
    )
    assert all(c.startswith("--from=") for c in copies), (
        f"the final stage copies from the build context, bypassing the builder: {copies}"
    )


def test_the_entrypoint_is_ocync_from_the_copied_venv(builder: Stage, final: Stage) -> None:
    entrypoints = final.values("ENTRYPOINT")
    assert entrypoints, "the final stage has no ENTRYPOINT"
    exec_form = entrypoints[-1].startswith("[")
    assert exec_form and json.loads(entrypoints[-1]) == ["ocync"], (
        f'ENTRYPOINT must be the exec form ["ocync"] (signals reach ocync), not {entrypoints[-1]}'
    )
    venv = re.search(r"python -m venv (\S+)", " ".join(builder.values("RUN")))
    assert venv, "the builder creates no virtual environment to install ocync into"
    copied = [c.split()[1:] for c in final.values("COPY") if c.startswith("--from=")]
    assert [venv.group(1), venv.group(1)] in copied, (
        f"the final stage does not copy the venv {venv.group(1)} to the same path"
    )
    path = " ".join(final.values("ENV"))
    assert f"PATH={venv.group(1)}/bin:" in path, (
        f"{venv.group(1)}/bin is not on PATH in the final stage: the ENTRYPOINT would not resolve"
    )


def test_the_image_exposes_the_port_of_ocync_watch(final: Stage) -> None:
    listen = next(p for p in cli.commands["watch"].params if p.name == "listen")
    port = str(listen.default).rpartition(":")[2]
    assert final.values("EXPOSE") == [port], (
        f"EXPOSE {final.values('EXPOSE')} differs from ocync watch's default port {port}"
    )


def test_the_build_context_holds_every_package(builder: Stage) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    sources = [
        word
        for copy in builder.values("COPY")
        if not copy.startswith("--from=")
        for word in copy.split()[:-1]
    ]
    ignored = _dockerignore()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(source, ignored), f"COPY {source}: .dockerignore leaves it out"
    readme = pyproject["project"]["readme"]
    assert readme in sources, f"the build needs {readme} (pyproject's readme); it is not copied"
    assert "pyproject.toml" in sources, "pyproject.toml is not copied into the builder"
    for pattern in find["include"]:
        package = pattern.rstrip("*")
        homes = [Path(where) / package for where in find["where"]]
        found = [home for home in homes if (ROOT / home).is_dir()]
        assert found, f"package {package} not found under {find['where']}"
        assert any(str(home) in sources or str(home.parent) in sources for home in found), (
            f"package {package} ({found[0]}) is not copied into the builder: the wheel lacks it"
        )


def test_the_extras_the_image_installs_exist(builder: Stage) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["optional-dependencies"])
    extras = next(
        (a.partition("=")[2] for a in builder.values("ARG") if a.startswith("OCYNC_EXTRAS=")), None
    )
    assert extras, "the builder declares no OCYNC_EXTRAS (the cloud credential extras)"
    unknown = set(extras.split(",")) - declared
    assert not unknown, f"the image installs extras pyproject.toml does not declare: {unknown}"


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = _dockerignore()
    for path in (".git", ".venv", "tests", ".pytest_cache", "ocync_core/__pycache__"):
        assert _ignored(path, ignored), f".dockerignore lets {path} into the build context"
    for path in ("ocync_core/cli.py", "plugins/ocync_ecr/__init__.py", "README.md"):
        assert not _ignored(path, ignored), f".dockerignore leaves out {path}; the build needs it"


def test_the_parser_reads_stages_args_and_continuations() -> None:
    text = (
        "ARG BASE=python:3.12-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN a \\\n"
        "  # a comment inside a continuation\n"
        "  && b\n"
        "FROM $BASE\n"
        "USER 1:1\n"
    )
    args, stages = parse_dockerfile(text)
    assert args == {"BASE": "python:3.12-slim"}
    assert [(s.base, s.name) for s in stages] == [
        ("python:3.12-slim", "build"),
        ("python:3.12-slim", None),
    ]
    assert stages[0].values("RUN") == ["a && b"]
    assert stages[1].values("USER") == ["1:1"]
