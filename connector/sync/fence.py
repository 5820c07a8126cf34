"""A run's write fence on SQLite: it writes only while it holds its lease, into the file it opened.

A run that was frozen (SIGSTOP, a suspended VM) past its lease may wake up while the run that took the
connection over is writing. So before the first write of every transaction it makes, the run checks,
inside that transaction, that its lease row is still its own and unexpired: the check is itself a write,
so it takes SQLite's write lock and nobody can take the lease over between the check and the writes
that follow. A database file deleted (or replaced) under a running sync is caught the same way, and at
every safe point, instead of the run writing on into a deleted file and reporting success.

PostgreSQL needs none of this: its run lock is an advisory lock that lives exactly as long as the
session holding it, which the heartbeat watches.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url

from connector.sync.context import StopRequested
from connector.sync.lock import RunLock

_WRITES = ("insert", "update", "delete", "replace")
# The lease check: a no-op write on our own, unexpired lease row (times are stored as SQLite text).
_HOLD = ("UPDATE sync_locks SET heartbeat_at = heartbeat_at WHERE connection = ? AND holder = ? AND pid = ? "
         "AND lease_until > ?")


def _sqlite_time(at: datetime) -> str:
    """An aware time as the ledger's UTCDateTime columns hold it on SQLite (naive UTC text)."""
    return at.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _lock_row(raw: tuple[Any, ...] | None) -> SimpleNamespace | None:
    if raw is None:
        return None
    holder, pid, run_id, lease_until = raw
    lease = datetime.fromisoformat(lease_until).replace(tzinfo=UTC) if lease_until else None
    return SimpleNamespace(holder=holder, pid=pid, run_id=run_id, lease_until=lease)


class WriteFence:
    """Guards one run's writes to a SQLite file; `engine` is the run's view of the database."""

    def __init__(self, lock: RunLock, engine: Engine) -> None:
        self.lock = lock
        self.path = os.path.abspath(str(make_url(str(engine.url)).database))
        self.identity = self._identity()
        self.engine = engine.execution_options(write_guard=True)
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._before_write)

    @classmethod
    def for_run(cls, lock: RunLock | None, engine: Engine) -> WriteFence | None:
        """A guard when the run holds a lease on a SQLite file; None otherwise."""
        database = make_url(str(engine.url)).database
        if lock is None or engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        return cls(lock, engine)

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def file_problem(self) -> str | None:
        """Why the database file is no longer the one the run opened, or None."""
        now = self._identity()
        if now == self.identity:
            return None
        what = "deleted" if now is None else "replaced by another file"
        return (f"the database file {self.path} was {what} while the run was in progress; the run stopped "
                "without writing more; restore the database and run again")

    def problem(self) -> str | None:
        """At a safe point: why the run must stop (its lease lost, its database file gone), or None."""
        found = self.file_problem()
        if found is not None:
            return found
        row = self.lock.stored_row()
        now = self.lock.clock()
        if row is not None and row.holder == self.lock.holder and row.pid == self.lock.pid and \
                row.lease_until is not None and row.lease_until > now:
            return None
        return self._lost(row)

    def _lost(self, row: Any) -> str:
        name = self.lock.connection
        if row is None or row.holder != self.lock.holder or row.pid != self.lock.pid:
            who = f" by {row.holder or f'pid {row.pid}'} (run {row.run_id})" if row is not None else ""
            return (
                f"the run lock of {name!r} was taken over{who} after this run's lease expired "
                f"(was this process stopped or frozen?); the run stopped without writing more")
        return (
            f"this run's lease on {name!r} expired at {row.lease_until:%Y-%m-%d %H:%M:%S} UTC "
            f"(was this process stopped or frozen?); the run stopped without writing more")

    def _begin(self, conn: Connection) -> None:
        conn.info.pop("write_guarded", None)

    def _before_write(self, conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                      executemany: bool) -> None:
        if conn.info.get("write_guarded") or not statement.lstrip().lower().startswith(_WRITES):
            return
        conn.info["write_guarded"] = True  # once per transaction (reset at its begin)
        found = self.file_problem()
        if found is not None:
            raise StopRequested(found, "failed")
        lock = self.lock
        cursor.execute(_HOLD, (lock.connection, lock.holder, lock.pid, _sqlite_time(lock.clock())))
        if cursor.rowcount != 1:
            cursor.execute("SELECT holder, pid, run_id, lease_until FROM sync_locks WHERE connection = ?",
                           (lock.connection,))
            raise StopRequested(self._lost(_lock_row(cursor.fetchone())), "failed")
