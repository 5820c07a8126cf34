"""Rich progress bars for a long `sync run` (pull, reconcile, write, tasks), shown once the run has lasted a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class RunProgress:
    """A `SyncEngine` progress observer: one bar per stage, appearing only after `delay` seconds."""

    def __init__(self, console: Console, *, delay: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 transient: bool = True) -> None:
        self.console = console
        self.delay = delay
        self.clock = clock
        self.transient = transient
        self.started = clock()
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.latest: dict[str, tuple[int, int | None]] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Record how far `stage` is; start showing the bars once the run is long enough."""
        self.latest[stage] = (done, total)
        if self.bars is None:
            if self.clock() - self.started < self.delay:
                return
            self.bars = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=self.transient)
            self.bars.start()
            for name, (d, t) in self.latest.items():
                self._show(name, d, t)
            return
        self._show(stage, done, total)

    def _show(self, stage: str, done: int, total: int | None) -> None:
        assert self.bars is not None
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()
