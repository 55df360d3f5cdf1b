"""`docs/reliability.md` stays true: every row names a test that exists in the suite, and the
stated number of scenarios is the number of rows."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"

_TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")
_COUNT = re.compile(r"\*\*(\d+) scenarios, each with its test\.\*\*")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def _rows(text: str) -> list[str]:
    """The body rows of every table (header rows and separators left out)."""
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines):
        if not line.startswith("|") or _SEPARATOR.match(line):
            continue
        followed_by_separator = number + 1 < len(lines) and _SEPARATOR.match(lines[number + 1])
        if not followed_by_separator:
            rows.append(line)
    return rows


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


@cache
def _tests_in(path: str) -> frozenset[str]:
    """`name` and `Class::name` of every test function a test file defines."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, functions) and item.name.startswith("test")
            )
    return frozenset(found)


def test_every_row_names_a_test_that_exists():
    rows = _rows(DOC.read_text())
    assert len(rows) > 50, "the tables of docs/reliability.md were not found"
    missing = []
    for row in rows:
        cells = _cells(row)
        assert len(cells) >= 3 and all(cells), f"a row with an empty or missing column: {row}"
        ids = _TEST_ID.findall(cells[-1])
        assert ids, f"a row names no test (`tests/file.py::test_name`): {row}"
        for path, name in ids:
            in_suite = Path(path).name.startswith("test_") and (ROOT / path).is_file()
            if not in_suite or name not in _tests_in(path):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_stated_count_is_the_number_of_rows():
    text = DOC.read_text()
    stated = _COUNT.findall(text)
    assert len(stated) == 1, "docs/reliability.md must say '**N scenarios, each with its test.**'"
    assert int(stated[0]) == len(_rows(text)), (
        f"docs/reliability.md says {stated[0]} scenarios but its tables have "
        f"{len(_rows(text))} rows"
    )


def test_no_scenario_is_listed_twice():
    seen: dict[str, int] = {}
    for row in _rows(DOC.read_text()):
        scenario = _cells(row)[-3].lower()
        seen[scenario] = seen.get(scenario, 0) + 1
    assert not [s for s, n in seen.items() if n > 1], "a scenario has two rows"
