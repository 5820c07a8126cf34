"""Rich progress bars for a long `sync run` (pull, reconcile, write, tasks), shown once the run has lasted
a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class RunProgress:
    """A `SyncEngine` progress observer: one bar per stage, appearing only after `delay` seconds; `waiting`
    is the CRM clients' wait listener, so a rate-limited stage says it waits and for how long instead of
    standing still."""

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
        self.stage: str | None = None  # the stage reported last: the one a wait holds up
        self.wait_until = 0.0
        self.wait_why = ""

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Record how far `stage` is; start showing the bars once the run is long enough."""
        self.latest[stage] = (done, total)
        self.stage = stage
        if self.bars is None:
            if self.clock() - self.started < self.delay:
                return
            self._start()
            return
        self._show(stage, done, total)

    def waiting(self, seconds: float, why: str) -> None:
        """The run waits `seconds` (`why`: a rate limit, a retry's back-off): show a countdown on the current
        stage (a terminal), or one line (a log or a pipe, for waits of a second or more)."""
        self.wait_until, self.wait_why = self.clock() + seconds, why
        if not self.console.is_terminal:
            if seconds >= 1:
                self.console.print(f"{self.stage or 'sync'}: waiting {seconds:.0f}s ({why})", markup=False,
                                   highlight=False)
            return
        if self.bars is None:
            self._start()

    def _start(self) -> None:
        self.bars = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), _WaitColumn(self), console=self.console,
                             transient=self.transient)
        self.bars.start()
        for name, (d, t) in self.latest.items():
            self._show(name, d, t)

    def _show(self, stage: str, done: int, total: int | None) -> None:
        assert self.bars is not None
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)

    def wait_note(self, task: Task) -> str:
        """`waiting 12s (rate limited by zoho)` on the stage a wait holds up, while it lasts; else ''."""
        left = self.wait_until - self.clock()
        if left <= 0 or self.stage is None or self.tasks.get(self.stage) != task.id:
            return ""
        return f"waiting {left:.0f}s ({self.wait_why})"

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()


class _WaitColumn(ProgressColumn):
    """The countdown of a wait, beside the stage it holds up."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self.progress = progress

    def render(self, task: Task) -> Text:
        """The note for `task` (usually empty)."""
        return Text(self.progress.wait_note(task), style="yellow")
