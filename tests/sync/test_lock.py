"""The run lock: one run per connection across processes; leases on SQLite, advisory locks on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from connector.db.engine import make_engine
from connector.sync import tables as t
from connector.sync.lock import Heartbeat, LeaseLost, RunLock, RunLocked

from clock import Clock


def test_second_holder_is_refused_with_holder_and_since(db_url: str) -> None:
    engine = make_engine(db_url)
    first = RunLock(engine, "zoho", holder="worker-a")
    first.acquire()
    first.bind(17)
    with pytest.raises(RunLocked,
                       match=r"being synced by run 17 \(worker worker-a, pid \d+ on .*since 20") as info:
        RunLock(engine, "zoho", holder="worker-b").acquire()
    assert info.value.exit_code == 4
    RunLock(engine, "other", holder="worker-b").acquire()  # other connections are independent
    first.release()
    again = RunLock(engine, "zoho", holder="worker-b")
    again.acquire()
    again.release()
    with engine.connect() as conn:
        assert conn.execute(select(t.locks).where(t.locks.c.connection == "zoho")).first() is None


def test_sqlite_lease_expires_and_is_taken_over(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc))
    old = RunLock(engine, "zoho", holder="frozen", lease=timedelta(seconds=60), clock=clock)
    old.acquire()
    with engine.begin() as conn:  # pretend the holder lives on another host, so its pid can't be checked
        conn.execute(t.locks.update().values(host="elsewhere"))
    clock.now += timedelta(seconds=59)
    with pytest.raises(RunLocked, match="worker frozen"):
        RunLock(engine, "zoho", holder="new", clock=clock).acquire()
    clock.now += timedelta(seconds=2)
    new = RunLock(engine, "zoho", holder="new", clock=clock)
    new.acquire()
    with pytest.raises(LeaseLost, match="taken over"):
        old.heartbeat()
    new.heartbeat()
    with engine.connect() as conn:
        row = conn.execute(select(t.locks)).one()
    assert row.holder == "new" and row.lease_until == clock.now + timedelta(seconds=60)


def test_sqlite_lock_of_a_dead_local_process_is_taken_at_once(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = RunLock(engine, "zoho", holder="dead")
    lock.acquire()
    with engine.begin() as conn:
        conn.execute(t.locks.update().values(pid=gone.pid))
    RunLock(engine, "zoho", holder="alive").acquire()


def test_heartbeat_thread_keeps_the_lease_and_reports_loss(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    lock = RunLock(engine, "zoho", holder="beating", lease=timedelta(seconds=10))
    lock.acquire()
    with engine.connect() as conn:
        first = conn.execute(select(t.locks.c.lease_until)).scalar()
    with Heartbeat(lock, timedelta(seconds=0.05)) as beat:
        time.sleep(0.3)
        with engine.connect() as conn:
            assert conn.execute(select(t.locks.c.lease_until)).scalar() > first
        with engine.begin() as conn:  # someone else took over
            conn.execute(t.locks.update().values(holder="thief"))
        deadline = time.time() + 5
        while beat.lost is None and time.time() < deadline:
            time.sleep(0.02)
    assert beat.lost and "taken over" in beat.lost


HOLDER = textwrap.dedent("""
    import sys, time
    from connector.db.engine import make_engine
    from connector.sync.lock import RunLock
    lock = RunLock(make_engine(sys.argv[1]), "zoho", holder="child")
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.mark.postgres
def test_postgres_advisory_lock_dies_with_its_process(pg_url: str) -> None:
    engine = make_engine(pg_url)
    child = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match="worker child"):
            RunLock(engine, "zoho", holder="parent").acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.time() + 10
        while True:  # the server notices the closed session within moments
            try:
                lock = RunLock(engine, "zoho", holder="parent")
                lock.acquire()
                break
            except RunLocked:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        with engine.connect() as conn:
            assert conn.execute(select(
                t.locks.c.holder)).scalar() == "parent"  # the dead holder's row replaced
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.postgres
def test_postgres_heartbeat_reports_a_lost_session(pg_url: str) -> None:
    from sqlalchemy import text

    engine = make_engine(pg_url)
    lock = RunLock(engine, "zoho", holder="fragile")
    lock.acquire()
    assert lock._pg is not None
    pid = lock._pg.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._pg.commit()
    with engine.begin() as conn:  # the server (or a network cut) ends the session holding the lock
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    with pytest.raises(LeaseLost, match="session holding the run lock of 'zoho' was lost"):
        lock.heartbeat()
    lock.release()  # still safe after the loss
    again = RunLock(engine, "zoho", holder="next")
    again.acquire()  # the lock went with the session
    again.release()
