"""Small database helpers for the sync state: JSON, upserts, cursors, the run lock, error rows."""

from __future__ import annotations

import json
import os
import socket
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, select

from connector.errors import ConnectorError
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
    """Update the row with `keys`, or insert it (works on SQLite and PostgreSQL)."""
    cond = and_(*[table.c[k] == v for k, v in keys.items()])
    if conn.execute(table.update().where(cond).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(**keys, **values))


def get_cursor(engine: Engine, connection: str, stream: str) -> datetime | None:
    """Where the stream's last completed pull started, or None."""
    with engine.connect() as conn:
        return conn.execute(select(t.cursors.c.cursor_at).where(
            t.cursors.c.connection == connection, t.cursors.c.stream == stream)).scalar()


def set_cursor(conn: Connection, connection: str, stream: str, at: datetime, run_id: int) -> None:
    """Save a stream's cursor (call inside the transaction that stores the data it covers)."""
    upsert(conn, t.cursors, {"connection": connection, "stream": stream}, {"cursor_at": at, "run_id": run_id})


class RunLocked(ConnectorError):
    """Another run of the same connection is in progress."""

    exit_code = 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(conn: Connection, connection: str, run_id: int, now: datetime) -> None:
    """Take the per-connection run lock; a lock left by a dead process on this host is taken over."""
    host = socket.gethostname()
    row = conn.execute(select(t.locks).where(t.locks.c.connection == connection)).first()
    if row is not None:
        if row.host == host and not _alive(row.pid):
            conn.execute(t.locks.delete().where(t.locks.c.connection == connection))
        else:
            raise RunLocked(f"connection {connection!r} is being synced by run {row.run_id} (pid {row.pid} on "
                            f"{row.host}, since {row.acquired_at:%Y-%m-%d %H:%M:%S}); try again when it ends",
                            connection=connection)
    conn.execute(t.locks.insert().values(connection=connection, run_id=run_id, pid=os.getpid(), host=host,
                                         acquired_at=now))


def release_lock(conn: Connection, connection: str, run_id: int) -> None:
    """Drop the lock if this run holds it."""
    conn.execute(t.locks.delete().where(t.locks.c.connection == connection, t.locks.c.run_id == run_id))


def record_error(conn: Connection, connection: str, run_id: int, record: str, field: str, stage: str,
                 reason: str, now: datetime) -> None:
    """Record (or refresh) a per-record error; it stays open until the record succeeds."""
    keys = {"connection": connection, "record": record, "stage": stage}
    row = conn.execute(select(t.errors.c.id, t.errors.c.attempts, t.errors.c.resolved_at).where(
        *[t.errors.c[k] == v for k, v in keys.items()])).first()
    if row is None:
        conn.execute(t.errors.insert().values(**keys, field=field, reason=reason, run_id=run_id, first_seen=now,
                                              last_seen=now, attempts=1))
    else:
        conn.execute(t.errors.update().where(t.errors.c.id == row.id).values(
            field=field, reason=reason, run_id=run_id, last_seen=now, resolved_at=None,
            attempts=(row.attempts + 1) if row.resolved_at is None else 1))


def resolve_error(conn: Connection, connection: str, record: str, stage: str, now: datetime) -> None:
    """Close the open error of a record that now went through."""
    conn.execute(t.errors.update().where(t.errors.c.connection == connection, t.errors.c.record == record,
                                         t.errors.c.stage == stage, t.errors.c.resolved_at.is_(None))
                 .values(resolved_at=now))
