"""Small database helpers for the sync state: JSON, upserts, cursors, the run lock, error rows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector.sync import tables as t


def dumps(value: Any) -> str:
    """JSON with Decimals and dates as strings, keys sorted (stable for fingerprints)."""
    def conv(v: Any) -> Any:
        if isinstance(v, Decimal):
            return format(v, "f")
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        raise TypeError(f"cannot encode {type(v).__name__}")
    return json.dumps(value, default=conv, sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> Any:
    """Inverse of `dumps` (Decimals stay strings)."""
    return json.loads(text) if text else None


def upsert(conn: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row with `keys` (its whole primary key), or insert it; `upsert_many` of one row."""
    upsert_many(conn, table, [{**keys, **values}])


def upsert_many(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """`upsert` of many rows, each holding the table's whole primary key, in one statement per column set.

    INSERT .. ON CONFLICT (primary key) DO UPDATE the given columns; others keep their value (or
    take their default on insert). The database checks each row as an insert first, so a row must
    hold every NOT NULL column that has no default, even when it only updates. Rows apply as if one
    after another: a key given twice ends with the later values over the earlier ones. SQLite and
    PostgreSQL only; being a single write statement, it never upgrades a read lock.
    """
    keys = [c.name for c in table.primary_key.columns]
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        merged[key] = {**merged[key], **row} if key in merged else row
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in merged.values():  # one executemany needs the same columns in every row
        groups.setdefault(tuple(sorted(row)), []).append(row)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for columns, group in groups.items():
        stmt = insert(table)
        updates = {c: stmt.excluded[c] for c in columns if c not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates) if updates else \
            stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, group)


def deletion_stream(name: str) -> str:
    """The cursor name of a stream's separate deletion check (Zoho `/deleted`)."""
    return f"{name}:deleted"


def get_cursor(engine: Engine, connection: str, stream: str) -> datetime | None:
    """Where the stream's last completed pull started, or None."""
    with engine.connect() as conn:
        return conn.execute(select(t.cursors.c.cursor_at).where(
            t.cursors.c.connection == connection, t.cursors.c.stream == stream)).scalar()


def set_cursor(conn: Connection, connection: str, stream: str, at: datetime, run_id: int) -> None:
    """Save a stream's cursor (call inside the transaction that stores the data it covers)."""
    upsert(conn, t.cursors, {"connection": connection, "stream": stream}, {"cursor_at": at, "run_id": run_id})


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
