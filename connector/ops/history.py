"""What run history means, in one place: which statuses are failures, the failure streak, a run's reason.

`status` (what an operator sees) and the alerts (what wakes someone up) read history the same way:
a *failure* is a `failed`, `crashed` or `held` run, or a `running` row that is not the run holding the lock
now (its process died before it could say so); a *success* is `ok` or `partial`. An `interrupted`
(signal) or `budget` run is neither: it does not extend a streak and does not end one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from connector import redact
from connector.db.rows import loads
from connector.sync import tables as t

FAILURES = ("failed", "crashed", "held")  # held: stopped by the mass-change guard, a person must decide
SUCCESSES = ("ok", "partial")


def stats_of(row: Any) -> dict[str, Any]:
    """A run row's stored report (JSON), {} when missing or unreadable."""
    try:
        data = loads(row.stats)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def run_reason(row: Any) -> str:
    """Why a run ended as it did: its `reason` column, else the run-level error in its report; redacted."""
    if row.reason:
        return redact.text(str(row.reason))
    for err in stats_of(row).get("errors") or []:
        if isinstance(err, dict) and err.get("stage") in ("run", "start") and err.get("reason"):
            return redact.text(str(err["reason"]))
    return ""


def live_run(conn: Connection, connection: str) -> int | None:
    """The run holding the connection's lock now, if any."""
    return conn.execute(select(t.locks.c.run_id).where(t.locks.c.connection == connection)).scalar()


def failure_streak(conn: Connection, connection: str, *, up_to: int | None = None,
                   live: int | None = None) -> int:
    """Failures in a row (real runs, up to run `up_to` if given) since the last success.

    `live` is the run holding the lock now: still running, so not a failure."""
    r = t.runs.c
    real = [r.connection == connection, r.dry_run.is_(False)]
    if up_to is not None:
        real.append(r.id <= up_to)
    last_ok = select(func.coalesce(func.max(r.id), 0)).where(*real, r.status.in_(SUCCESSES)).scalar_subquery()
    failed = r.status.in_(FAILURES) | and_(r.status == "running", r.id != (live or -1))
    return int(conn.execute(select(func.count()).select_from(t.runs).where(*real, r.id > last_ok, failed))
               .scalar_one())
