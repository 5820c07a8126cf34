"""SIGTERM and SIGINT for anything that runs syncs: the first asks for a stop, a second exits at once.

Stopping after the current batch is safe and exiting mid-batch is safe too (the outbox, idempotent
postings and cursors let the next run complete the work); the first signal only makes the stop clean.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stop_signals(on_first: Callable[[str], None], on_second: Callable[[str], None] = lambda _name: None
                 ) -> Iterator[Callable[[], str | None]]:
    """While the block runs, the first signal calls `on_first(name)`, a second `on_second(name)` then exits 1.

    Yields a `should_stop` callable: the first signal's name once one came, else None. The previous
    handlers come back when the block ends."""
    got: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if got:
            on_second(name)
            os._exit(1)
        got.append(name)
        on_first(name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
