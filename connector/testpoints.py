"""Named points where a fault test can stop this process dead: `PREPAID_SYNC_KILL_AT=name[@n]`.

With the variable set, the `n`-th time (default the first) the process reaches the point `name` it
sends itself SIGKILL, so a crash test can land a kill exactly there instead of guessing a time.
Without it (every real run), `reach` is one environment lookup. The points:

- `ledger.batch_written`: a batch of postings (and whatever the caller commits with it, such as the
  sync cursor) is written but not yet committed;
- `ledger.batch_committed`: that transaction has just committed.
"""

from __future__ import annotations

import os
import signal

ENV = "PREPAID_SYNC_KILL_AT"
POINTS = frozenset({"ledger.batch_written", "ledger.batch_committed"})
_reached: dict[str, int] = {}


def parse(spec: str) -> tuple[str, int]:
    """`name[@n]` as (name, n); a ValueError naming the variable for anything else."""
    name, _, nth = spec.partition("@")
    if name not in POINTS or not (nth or "1").isdigit() or int(nth or "1") < 1:
        raise ValueError(f"{ENV}={spec!r}: expected one of {', '.join(sorted(POINTS))}, "
                         "optionally followed by @n (n >= 1)")
    return name, int(nth or "1")


def reach(name: str) -> None:
    """Count one arrival at `name`; SIGKILL this process if `PREPAID_SYNC_KILL_AT` names this arrival."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, nth = parse(spec)
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
