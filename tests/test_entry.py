"""The `ocync` command exits without tearing the interpreter down, and loses nothing by it:
exit statuses, buffered output and exit handlers are as a normal exit leaves them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocync_core.errors import EXIT_BAD_INPUT

PRELUDE = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
from ocync_core.entry import main
"""


def _run(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + f"sys.argv = ['ocync', *{list(argv)!r}]\n" + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_a_finished_command_flushes_its_output_and_runs_exit_handlers() -> None:
    # Piped stdout is block-buffered: without the flush the version line would be lost.
    done = _run("main()", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ocync, version ")
    assert "exit handler ran" in done.stderr


def test_the_command_status_is_kept(tmp_path: Path) -> None:
    done = _run("main()", "sync", "-c", str(tmp_path / "missing.yaml"))
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "missing.yaml" in done.stderr
    assert "exit handler ran" in done.stderr


@pytest.mark.parametrize(
    ("code", "status", "said"),
    [("None", 0, ""), ("3", 3, ""), ("'no config given'", 1, "no config given")],
)
def test_sys_exit_values_mean_what_they_mean_to_python(code: str, status: int, said: str) -> None:
    script = (
        "import ocync_core.cli\n"
        f"def fails(): raise SystemExit({code})\n"
        "ocync_core.cli.main = fails\n"
        "main()\n"
    )
    done = _run(script)
    assert done.returncode == status
    assert said in done.stderr
    assert "exit handler ran" in done.stderr
