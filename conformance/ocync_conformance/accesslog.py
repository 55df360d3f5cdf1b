"""Read a docker-registry's access log: what requests it served, to count them in tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AccessEntry", "read_access_log"]

# Combined log format: 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 157 "" "agent"
_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) '
    r'\S+ "[^"]*" "(?P<agent>[^"]*)"'
)


@dataclass(frozen=True)
class AccessEntry:
    method: str
    uri: str
    status: int
    agent: str

    @property
    def is_blob_get(self) -> bool:
        return self.method == "GET" and "/blobs/sha256:" in self.uri

    @property
    def is_blob_upload(self) -> bool:
        return "/blobs/uploads/" in self.uri and "mount=" not in self.uri

    @property
    def is_mount(self) -> bool:
        return self.method == "POST" and "mount=" in self.uri


def read_access_log(path: Path | str, *, agent_prefix: str = "") -> list[AccessEntry]:
    """Every request in the log, optionally only those whose User-Agent starts with a prefix."""
    entries = []
    for line in Path(path).read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match and match["agent"].startswith(agent_prefix):
            entries.append(
                AccessEntry(match["method"], match["uri"], int(match["status"]), match["agent"])
            )
    return entries
