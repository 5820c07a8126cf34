"""Per-record error rows: a record that failed at a stage stays listed (and counted) until it goes through."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector.sync import tables as t


def record_error(conn: Connection, connection: str, run_id: int, record: str, field: str, stage: str,
                 reason: str, now: datetime) -> None:
    """Record (or refresh) a per-record error; it stays open until the record succeeds.

    One statement (no read first), so it never has to upgrade a read lock to a write lock; `attempts`
    counts on while the error stays open and starts again at 1 when a resolved error comes back.
    """
    e = t.errors
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(e).values(
        connection=connection, record=record, stage=stage, field=field, reason=reason, run_id=run_id,
        first_seen=now, last_seen=now, attempts=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["connection", "record", "stage"], set_={
        "field": stmt.excluded.field, "reason": stmt.excluded.reason, "run_id": stmt.excluded.run_id,
        "last_seen": stmt.excluded.last_seen, "resolved_at": None,
        "attempts": case((e.c.resolved_at.is_(None), e.c.attempts + 1), else_=1)}))


def resolve_error(conn: Connection, connection: str, record: str, stage: str, now: datetime) -> None:
    """Close the open error of a record that now went through."""
    resolve_errors(conn, connection, [record], stage, now)


def resolve_errors(conn: Connection, connection: str, records: Iterable[str], stage: str,
                   now: datetime) -> None:
    """Close the open errors of many records that went through (one statement per 500 records)."""
    todo = sorted(set(records))
    for start in range(0, len(todo), 500):
        conn.execute(t.errors.update().where(t.errors.c.connection == connection, t.errors.c.stage == stage,
                                             t.errors.c.record.in_(todo[start:start + 500]),
                                             t.errors.c.resolved_at.is_(None)).values(resolved_at=now))
