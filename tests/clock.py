"""The one fake clock of the test suite: time that moves only when a test moves it.

Calling it gives an aware UTC `datetime` (what the engine, the ledger, the scheduler and the run lock
take); `seconds` is the same instant as POSIX seconds (what the sandboxes and the token caches take), so
one object can drive both sides of a test. The `clock` fixture in `tests/conftest.py` builds one;
a folder or module that wants another starting instant overrides the `clock_start` fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


class Clock:
    """A clock tests move by hand: `clock()` is now (aware UTC), `advance(...)` and `set(...)` move it."""

    def __init__(self, start: datetime | float | None = None) -> None:
        self.now = START
        self.set(START if start is None else start)

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        """Now as POSIX seconds (for code that keeps time as a float)."""
        return self.now.timestamp()

    def advance(self, seconds: float = 0, **kw: float) -> datetime:
        """Move forward by `seconds` plus any `timedelta` keywords (`minutes=5`); returns the new now."""
        step = timedelta(seconds=seconds, **kw)
        if step < timedelta(0):
            raise ValueError(f"a clock moves forward only; asked to move by {step}")
        self.now += step
        return self.now

    def set(self, when: datetime | float) -> datetime:
        """Jump to `when` (an aware datetime, or POSIX seconds), forward or back; returns it."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError(f"the clock keeps aware times; got the naive {when.isoformat()}")
            self.now = when.astimezone(UTC)
        else:
            self.now = datetime.fromtimestamp(when, UTC)
        return self.now
