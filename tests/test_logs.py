"""Log output: JSON lines for collectors, text for people, -v/-q levels on every command."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocync_core.cli import cli
from ocync_core.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test here configures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    watched = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in watched.items():
        logging.getLogger(name).setLevel(saved)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no log line at all"
    return [json.loads(line) for line in lines]  # a line that is not one JSON object fails


def test_a_json_line_holds_time_level_logger_message_and_fields():
    out = io.StringIO()
    configure_logging(log_format="json", stream=out)
    logging.getLogger("ocync.test").warning(
        "copied %s\nin %d parts",
        "app:v1",
        3,
        extra={"target": "dst/app:v1", "bytes": 1024, "path": Path("/tmp/x"), "level": "mine"},
    )
    assert out.getvalue().count("\n") == 1, "one record must be exactly one line"
    [entry] = json_lines(out.getvalue())
    assert entry["message"] == "copied app:v1\nin 3 parts"
    assert entry["level"] == "warning"
    assert entry["logger"] == "ocync.test"
    assert isinstance(entry["time"], str) and entry["time"].endswith("Z")
    assert datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).tzinfo is not None
    assert (entry["target"], entry["bytes"], entry["path"]) == ("dst/app:v1", 1024, "/tmp/x")
    assert entry["field_level"] == "mine", "a field must not overwrite the record's own keys"
    assert not {"args", "msg", "levelno", "pathname", "thread"} & set(entry)


def test_a_json_line_carries_the_traceback():
    out = io.StringIO()
    configure_logging(log_format="json", stream=out)
    try:
        raise ValueError("broken digest")
    except ValueError:
        logging.getLogger("ocync.test").exception("copy failed")
    [entry] = json_lines(out.getvalue())
    assert entry["message"] == "copy failed"
    assert "Traceback" in str(entry["exception"]) and "broken digest" in str(entry["exception"])


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, 0, logging.INFO),
        (1, 0, logging.DEBUG),
        (3, 0, logging.DEBUG),
        (0, 1, logging.WARNING),
        (0, 2, logging.ERROR),
        (0, 5, logging.ERROR),
    ],
)
def test_verbosity_sets_the_level(verbose: int, quiet: int, level: int):
    configure_logging(verbose, quiet, stream=io.StringIO())
    assert logging.getLogger().level == level


def test_request_lines_of_httpx_only_at_the_most_verbose_level():
    out = io.StringIO()
    configure_logging(verbose=1, stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET http://r/v2/")
    assert out.getvalue() == "", "-v must not show every request"
    configure_logging(verbose=2, stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET http://r/v2/")
    assert "HTTP Request" in out.getvalue()


def test_configuring_again_replaces_only_its_own_handler():
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(log_format="json", stream=second)
    logging.getLogger("ocync.test").info("once")
    assert first.getvalue() == "", "the first handler still writes"
    assert [e["message"] for e in json_lines(second.getvalue())] == ["once"]
    assert foreign in root.handlers, "a handler ocync did not install was removed"


def write_unreachable_config(tmp_path: Path) -> Path:
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "global: { cache: false }\n"
        "registries: { src: { url: 'http://127.0.0.1:1' }, dst: { url: 'http://127.0.0.1:2' } }\n"
        "defaults: { source: src, targets: dst }\n"
        "mappings: [ { from: team/app } ]\n"
    )
    return config


def test_every_command_logs_json_lines_when_asked(tmp_path: Path):
    config = str(write_unreachable_config(tmp_path))
    args = ["--log-format", "json", "sync", "-c", config, "--shard", "0/1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.stderr
    entries = json_lines(result.stderr)  # every line of stderr, errors included, is JSON
    assert any(
        e["level"] == "info" and e["message"] == "shard 0/1: 1 of 1 mappings" for e in entries
    )
    assert any(e["level"] == "error" and "cannot connect" in str(e["message"]) for e in entries)
    assert "0 images synced" in result.stdout, "the summary belongs on stdout, not in the log"

    missing = CliRunner(env={"OCYNC_LOG_FORMAT": "json"}).invoke(
        cli, ["watch", "-c", str(tmp_path / "absent.yaml")]
    )
    assert missing.exit_code == 3
    [refusal] = json_lines(missing.stderr)
    assert refusal["level"] == "error" and refusal["exit_code"] == 3
    assert "absent.yaml: no such file" in str(refusal["message"])


def test_text_logs_by_default_and_quiet_hides_info(tmp_path: Path):
    config = str(write_unreachable_config(tmp_path))
    shown = CliRunner().invoke(cli, ["sync", "-c", config, "--shard", "0/1"])
    assert "INFO shard 0/1: 1 of 1 mappings" in shown.stderr.splitlines()
    assert any(line.startswith("ERROR ") for line in shown.stderr.splitlines())
    quiet = CliRunner().invoke(cli, ["-q", "sync", "-c", config, "--shard", "0/1"])
    assert "INFO" not in quiet.stderr and "ERROR " in quiet.stderr
