"""Bursts of notices become single runs: per key (a connection), one run at a time, at most one queued.

A run starts once `quiet` seconds pass without a new notice, or `max_delay` seconds after the first
notice of the burst, whichever comes first. Notices that arrive while the key's run is going are folded
into exactly one follow-up run after it. A run that could not start because the connection is locked
(another process, the scheduler, holds it) is tried again `retry_after` seconds later, at most
`max_retries` times; after that the scheduled polling picks the changes up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
LOCKED = "locked"  # what `run` returns when the connection's run lock is held elsewhere


@dataclass
class _State:
    first: float | None = None  # the first notice of the pending burst
    last: float | None = None  # its latest notice
    not_before: float = 0.0  # a locked run is not tried again before this
    running: bool = False
    retries: int = 0


class Debouncer:
    """Calls `run(key)` once per burst of `notify(key)`; `spawn` starts each run (default: a new thread)."""

    def __init__(self, run: Callable[[str], str], *, quiet: float = 0.5, max_delay: float = 3.0,
                 retry_after: float = 2.0, max_retries: int = 30, clock: Callable[[], float] = time.monotonic,
                 spawn: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.run = run
        self.quiet = quiet
        self.max_delay = max_delay
        self.retry_after = retry_after
        self.max_retries = max_retries
        self.clock = clock
        self.spawn = spawn or _thread
        self.runs = 0  # runs started, for tests and status
        self._keys: dict[str, _State] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._woken = False  # something changed since the loop last looked

    def notify(self, key: str) -> None:
        """A notice for `key`: (re)arm its pending run."""
        with self._cond:
            state = self._keys.setdefault(key, _State())
            now = self.clock()
            state.last = now
            if state.first is None:
                state.first = now
            self._woken = True
            self._cond.notify_all()

    def _due_at(self, state: _State) -> float | None:
        if state.running or state.first is None or state.last is None:
            return None
        return max(min(state.first + self.max_delay, state.last + self.quiet), state.not_before)

    def tick(self) -> float | None:
        """Start every run that is due; returns the seconds until the next one (None: nothing pending)."""
        now = self.clock()
        start: list[str] = []
        nxt: float | None = None
        with self._cond:
            for key, state in self._keys.items():
                due = self._due_at(state)
                if due is None:
                    continue
                if due <= now:
                    state.running, state.first, state.last = True, None, None
                    start.append(key)
                else:
                    nxt = due - now if nxt is None else min(nxt, due - now)
            self.runs += len(start)
        for key in start:
            self.spawn(lambda key=key: self._run(key))  # type: ignore[misc]
        return nxt

    def _run(self, key: str) -> None:
        try:
            result = self.run(key)
        except Exception:  # noqa: BLE001 - a failed run must not stop later ones
            log.exception("push-triggered run of %s failed", key)
            result = "error"
        with self._cond:
            state = self._keys[key]
            state.running = False
            if result == LOCKED:
                state.retries += 1
                if state.retries <= self.max_retries:
                    now = self.clock()
                    state.not_before = now + self.retry_after
                    state.first = state.first if state.first is not None else now
                    state.last = state.last if state.last is not None else now
                else:
                    log.warning("%s stayed locked through %d tries; the scheduled poll will catch up", key,
                                self.max_retries)
                    state.retries = 0
            else:
                state.retries = 0
            self._woken = True
            self._cond.notify_all()

    def pending(self) -> bool:
        """Whether any run is waiting or going."""
        with self._cond:
            return any(s.running or s.first is not None for s in self._keys.values())

    def wait_idle(self, timeout: float) -> bool:
        """Wait (at most `timeout` real seconds) until no run is waiting or going."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(s.running or s.first is not None for s in self._keys.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- the background loop ----------------------------------------------------------------

    def start(self) -> None:
        """Run `tick` from a daemon thread, waking at each due time and each notice."""
        with self._cond:
            if self._thread is not None:
                return
            self._closed = False
            self._thread = threading.Thread(target=self._loop, name="push-debounce", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            wait = self.tick()
            with self._cond:
                if self._closed:
                    return
                if not self._woken:
                    self._cond.wait(wait if wait is not None else 1.0)
                self._woken = False

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop (a run in progress finishes on its own thread)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)


def _thread(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="push-run", daemon=True).start()
