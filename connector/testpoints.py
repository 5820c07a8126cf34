"""Named points where a fault test can stop this process dead: `PREPAID_SYNC_KILL_AT=name[@n]`.

With the variable set, the `n`-th time (default the first) the process reaches the point `name` it
sends itself SIGKILL, so a crash test can land a kill exactly there instead of guessing a time.
`PREPAID_SYNC_PAUSE_AT=name[@n]` holds the process there instead: it writes the point's name to the
FIFO `reached` in the folder `PREPAID_SYNC_PAUSE_PIPES`, then waits for a line on the FIFO `release`
there, so a test knows (by an event, not a delay) that a request is in flight, acts, then lets it go.
Without them (every real run), `reach` is two environment lookups. The points:

- `ledger.batch_written`: a batch of postings (and whatever the caller commits with it, such as the
  sync cursor) is written but not yet committed;
- `ledger.batch_committed`: that transaction has just committed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "PREPAID_SYNC_KILL_AT"
PAUSE_ENV = "PREPAID_SYNC_PAUSE_AT"
PIPES_ENV = "PREPAID_SYNC_PAUSE_PIPES"
POINTS = frozenset({"ledger.batch_written", "ledger.batch_committed"})
_reached: dict[str, int] = {}
_paused: dict[str, int] = {}


def parse(spec: str, env: str = ENV) -> tuple[str, int]:
    """`name[@n]` as (name, n); a ValueError naming the variable for anything else."""
    name, _, nth = spec.partition("@")
    if name not in POINTS or not (nth or "1").isdigit() or int(nth or "1") < 1:
        raise ValueError(f"{env}={spec!r}: expected one of {', '.join(sorted(POINTS))}, "
                         "optionally followed by @n (n >= 1)")
    return name, int(nth or "1")


def reach(name: str) -> None:
    """Count one arrival at `name`; SIGKILL this process if `PREPAID_SYNC_KILL_AT` names this arrival (hold
    it if `PREPAID_SYNC_PAUSE_AT` does)."""
    if os.environ.get(PAUSE_ENV):
        _pause(name, os.environ[PAUSE_ENV])
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, nth = parse(spec)
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)


def _pause(name: str, spec: str) -> None:
    point, nth = parse(spec, PAUSE_ENV)
    if point != name:
        return
    _paused[name] = _paused.get(name, 0) + 1
    if _paused[name] != nth:
        return
    folder = Path(os.environ[PIPES_ENV])
    with open(folder / "reached", "w", encoding="utf-8") as fh:  # opens once the test listens
        fh.write(name + "\n")
    with open(folder / "release", encoding="utf-8") as fh:  # returns once the test says go
        fh.readline()
