"""Each check's outcome in a pytest run of the suite, read from the run's JUnit report.

A plugin proves its registry's quirk by running the suite twice against the emulation: its
own class passes, a class with a plugin lacking the behaviour fails the checks the quirk
breaks. Run both in a pytest subprocess with ``--junitxml=PATH``, then compare:

    outcomes = read_junit(path)
    assert not outcomes.failed.get("TestMyPlugin")
    assert set(outcomes.failed["TestGenericPlugin"]) == {"test_mount_of_present_blob"}
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SuiteOutcomes", "read_junit"]


@dataclass
class SuiteOutcomes:
    """Check names by suite class (the test class's own name, without its module)."""

    passed: dict[str, set[str]] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> why
    skipped: dict[str, set[str]] = field(default_factory=dict)

    def checks(self, cls: str) -> set[str]:
        """Every check of `cls` that ran, whatever its outcome."""
        return {*self.passed.get(cls, ()), *self.failed.get(cls, {}), *self.skipped.get(cls, ())}

    def failure_texts(self, *, allow_skips: bool = True) -> dict[str, dict[str, str | None]]:
        """Per class, each check's failure text, None for one that did not fail.

        :param allow_skips: False makes a skipped check an AssertionError naming it, for
            comparisons where a skip would hide the difference they look for.
        """
        if not allow_skips:
            skipped = sorted(f"{c}.{n}" for c, names in self.skipped.items() for n in names)
            assert not skipped, f"checks were skipped: {skipped}"
        found: dict[str, dict[str, str | None]] = {}
        for cls in {*self.passed, *self.failed, *self.skipped}:
            texts: dict[str, str | None] = dict.fromkeys(self.checks(cls))
            texts.update(self.failed.get(cls, {}))
            found[cls] = texts
        return found


def read_junit(path: str | Path) -> SuiteOutcomes:
    """The outcomes in a JUnit XML report written by ``pytest --junitxml``."""
    outcomes = SuiteOutcomes()
    for case in ET.parse(path).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            # The message and the traceback: pytest-trio wraps a check's error in an
            # ExceptionGroup, so the message attribute alone may name only the group.
            outcomes.failed.setdefault(cls, {})[name] = (
                f"{failure.get('message', '')}\n{failure.text or ''}"
            )
        elif case.find("skipped") is not None:
            outcomes.skipped.setdefault(cls, set()).add(name)
        else:
            outcomes.passed.setdefault(cls, set()).add(name)
    return outcomes
