"""A live progress line for `ocync sync` on a terminal; nothing at all when output is not one."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from ocync_core.report import ImageResult, human_size

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["SyncProgress"]


class SyncProgress:
    """Counts images as discovery finds them and as execution finishes them."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bytes = 0
        self._failed = 0
        self._progress: Progress | None = None
        self._task = None
        if self.enabled:
            # Imported only for a terminal: rich costs tens of milliseconds of start-up.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]sync[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task("sync", total=0, detail="")

    def __enter__(self) -> SyncProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def discovered(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=(self._total() + count))

    def finished(self, result: ImageResult) -> None:
        self._bytes += result.blobs.bytes
        self._failed += result.status == "failed"
        if self._progress is not None and self._task is not None:
            detail = f"{human_size(self._bytes)}" + (
                f", {self._failed} failed" if self._failed else ""
            )
            self._progress.update(self._task, advance=1, detail=detail)

    def print(self, line: str) -> None:
        """Print above the live line (or plainly when there is none)."""
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            print(line, flush=True)

    def _total(self) -> int:
        assert self._progress is not None and self._task is not None
        return int(self._progress.tasks[0].total or 0)
