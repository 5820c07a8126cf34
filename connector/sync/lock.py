"""The per-connection run lock: one run of a connection at a time, across processes and hosts.

PostgreSQL: a session-level advisory lock held on a dedicated connection for the whole run. The
server drops it the moment that session ends, so a killed process never leaves it behind.

SQLite: a lease row in `sync_locks` with an expiry that a heartbeat keeps pushing forward. A holder
that stops heart-beating (killed, frozen, unplugged) loses the lease when it expires; a holder on
this host whose process is gone loses it at once.

On both, the `sync_locks` row names the holder (run, worker, pid, host, since) so that a refused run
and `prepaid-sync status` can say who holds the connection.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, text
from sqlalchemy.exc import OperationalError

from connector.errors import ConnectorError
from connector.db.engine import database_locked, write_transaction
from connector.timeutil import utcnow
from connector.logs import carry
from connector.sync import tables as t

log = logging.getLogger(__name__)
ADVISORY_CLASS = 0x5053  # "PS": the first key of our two-key advisory locks
# The second key: the connection's name within this database and schema (tests use a schema each).
_KEY_SQL = ":k, hashtext(current_database() || '/' || current_schema() || '/' || :c)"


class RunLocked(ConnectorError):
    """Another run of the same connection is in progress."""

    exit_code = 4


class LeaseLost(ConnectorError):
    """This run's lease expired and another holder took the connection over."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_crashed(conn: Connection, run_id: int, reason: str, now: datetime) -> None:
    """A run whose holder died stays 'running' in history unless the next holder says what happened."""
    if run_id:
        conn.execute(t.runs.update().where(t.runs.c.id == run_id, t.runs.c.status == "running").values(
            status="crashed", finished_at=now, reason=reason))


def default_holder() -> str:
    """`host:pid`, the name a process holds locks under unless it is given a worker id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunLock:
    """Take, keep alive and give back the run lock of one connection."""

    def __init__(self, engine: Engine, connection: str, *, holder: str | None = None,
                 lease: timedelta = timedelta(seconds=60), clock: Callable[[], datetime] = utcnow,
                 wait: timedelta = timedelta(seconds=10)) -> None:
        self.engine = engine
        self.connection = connection
        self.holder = holder or default_holder()
        self.lease = lease
        self.wait = wait  # SQLite: how long to wait for a writer that holds the database before giving up
        self.clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._pg: Connection | None = None
        self._postgres = engine.dialect.name == "postgresql"

    # -- taking --------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock or raise RunLocked naming the holder and since when."""
        if self._postgres:
            self._acquire_advisory()
        else:
            self._acquire_lease()

    def _row(self, conn: Connection) -> Row[Any] | None:
        return conn.execute(select(t.locks).where(t.locks.c.connection == self.connection)).first()

    def stored_row(self) -> Row[Any] | None:
        """The connection's lock row as stored now: who holds it, since and until when."""
        with self.engine.connect() as conn:
            return self._row(conn)

    def _refuse(self, row: Row[Any] | None) -> RunLocked:
        if row is None:
            return RunLocked(
                f"connection {self.connection!r} is being synced by another session; try again when "
                f"it ends", connection=self.connection)
        who = f"worker {row.holder}, " if row.holder else ""
        lease = f"; lease until {row.lease_until:%Y-%m-%d %H:%M:%S} UTC" if row.lease_until else ""
        run = f"run {row.run_id}" if row.run_id else "a run that is starting"
        return RunLocked(
            f"connection {self.connection!r} is being synced by {run} ({who}pid {row.pid} on "
            f"{row.host}, since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC{lease}); try again when it ends",
            connection=self.connection)

    def _acquire_lease(self) -> None:
        now = self.clock()
        try:
            with write_transaction(self.engine, wait=self.wait.total_seconds()) as conn:
                row, why = self._row(conn), ""
                if row is not None:
                    expired = row.lease_until is not None and row.lease_until <= now
                    if not (expired or (row.host == self.host and not _alive(row.pid))):
                        raise self._refuse(row)
                    why = "lease expired" if expired else f"pid {row.pid} is gone"
                self._take(conn, row, why, now)
        except OperationalError as exc:
            if not database_locked(exc):
                raise
            raise self._locked_database() from None

    def _locked_database(self) -> RunLocked:
        """Another process has held SQLite's write lock for all of `wait` (frozen mid-write, most likely):
        name whoever holds run locks (readers still get through), not a 'database is locked' traceback."""
        waited = f"{self.wait.total_seconds():g} s"
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.locks).order_by(t.locks.c.connection)).all()
        own = next((r for r in rows if r.connection == self.connection), None)
        if own is not None:
            refused = self._refuse(own)
            return RunLocked(
                f"{refused.message}; it has kept the database locked for over {waited} (is that process "
                f"stopped or frozen?)", connection=self.connection)
        others = "; ".join(f"{r.connection!r} by run {r.run_id} ({r.holder or ''} pid {r.pid} on {r.host})"
                           for r in rows)
        held = f" (runs holding connections now: {others})" if others else ""
        return RunLocked(
            f"the database is locked by another process that has not finished writing for over "
            f"{waited}{held}; try again when it ends, or look for a stopped or frozen prepaid-sync "
            f"process", connection=self.connection)

    def _take(self, conn: Connection, stale: Row[Any] | None, why: str, now: datetime) -> None:
        """Write our lock row, replacing a dead holder's (whose run is then marked crashed)."""
        if stale is not None:
            log.warning("taking over the run lock of %s from run %s (%s)", self.connection, stale.run_id, why)
            conn.execute(t.locks.delete().where(t.locks.c.connection == self.connection))
            _mark_crashed(
                conn, stale.run_id, f"its holder {stale.holder or stale.pid} stopped ({why}); taken over "
                f"by {self.holder}", now)
        conn.execute(t.locks.insert().values(
            connection=self.connection, run_id=0, pid=self.pid, host=self.host, holder=self.holder,
            acquired_at=now, heartbeat_at=now, lease_until=now + self.lease))

    def _advisory_key(self) -> dict[str, object]:
        return {"k": ADVISORY_CLASS, "c": self.connection}

    def _acquire_advisory(self) -> None:
        pg = self.engine.connect()
        try:
            got = pg.execute(text(f"SELECT pg_try_advisory_lock({_KEY_SQL})"), self._advisory_key()).scalar()
            pg.commit()
        except Exception:
            pg.close()
            raise
        if not got:
            pg.close()
            # The holder writes its row just after taking the lock (and deletes it just before giving the
            # lock back): wait a moment for the row, so that the refusal can name who holds it.
            row = None
            for _ in range(20):
                with self.engine.connect() as conn:
                    row = self._row(conn)
                if row is not None:
                    break
                time.sleep(0.05)
            raise self._refuse(row)
        self._pg = pg
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                # We hold the advisory lock, so any row left here belongs to a session that has ended.
                self._take(conn, self._row(conn), "its session ended", now)
        except Exception:
            self._unlock_advisory()
            raise

    # -- keeping -------------------------------------------------------------------------------

    def bind(self, run_id: int) -> None:
        """Record which run holds the lock."""
        self.run_id = run_id
        with self.engine.begin() as conn:
            conn.execute(t.locks.update().where(t.locks.c.connection == self.connection,
                                                t.locks.c.holder == self.holder).values(run_id=run_id))

    def heartbeat(self) -> None:
        """Push the lease forward; raise LeaseLost when another holder has taken the connection."""
        now = self.clock()
        if self._pg is not None:
            try:  # the advisory lock lives exactly as long as the session that took it
                self._pg.execute(text("SELECT 1")).scalar()
                self._pg.commit()
            except Exception as exc:
                raise LeaseLost(
                    f"the database session holding the run lock of {self.connection!r} was lost "
                    f"({type(exc).__name__}); another run may start", connection=self.connection) from None
        with self.engine.begin() as conn:
            n = conn.execute(t.locks.update().where(
                t.locks.c.connection == self.connection, t.locks.c.holder == self.holder,
                t.locks.c.pid == self.pid).values(heartbeat_at=now, lease_until=now + self.lease)).rowcount
        if n == 0:
            raise LeaseLost(
                f"the run lock of {self.connection!r} was taken over by another worker after this "
                f"run's lease expired", connection=self.connection)

    # -- giving back ---------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the lock if this process still holds it (safe to call twice)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(t.locks.delete().where(t.locks.c.connection == self.connection,
                                                    t.locks.c.holder == self.holder,
                                                    t.locks.c.pid == self.pid))
        finally:
            self._unlock_advisory()

    def _unlock_advisory(self) -> None:
        if self._pg is None:
            return
        pg, self._pg = self._pg, None
        try:
            pg.execute(text(f"SELECT pg_advisory_unlock({_KEY_SQL})"), self._advisory_key())
            pg.commit()
        except Exception:  # the session is going away anyway, and with it the lock
            log.warning("could not unlock the advisory lock of %s cleanly", self.connection, exc_info=True)
        finally:
            pg.close()


class Heartbeat:
    """A daemon thread that keeps a RunLock's lease alive while a run works; `lost` is set when it can't."""

    def __init__(self, lock: RunLock, every: timedelta) -> None:
        self.lock = lock
        self.every = every.total_seconds()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=carry(self._loop), name=f"heartbeat-{lock.connection}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lock.heartbeat()
            except LeaseLost as exc:
                self.lost = str(exc)
                log.error("%s", exc)
                return
            except Exception:  # a database hiccup: try again next beat; the lease has slack for it
                log.warning("heartbeat of %s failed; retrying", self.lock.connection, exc_info=True)
