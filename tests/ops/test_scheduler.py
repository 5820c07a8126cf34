"""The scheduler's decisions under a fake clock: due times, coalescing, misfires, restarts, claims, leases."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.config import Connection, LoadedSettings, SchedulerSettings, Settings
from connector.db.engine import make_engine
from connector.ops.book import next_fire
from connector.ops.scheduler import Worker
from connector.ops import tables as ot
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.sync.context import RunReport
from connector.sync.lock import RunLocked

from clock import Clock

UTC = timezone.utc
T0 = datetime(2026, 11, 27, 1, 7, tzinfo=UTC)  # 09:07 in Shanghai, a Friday


@dataclass
class FakeAdapter:
    def close(self) -> None:
        pass


@dataclass
class FakeSyncEngine:
    """Stands in for SyncEngine: records each run and answers with a scripted status."""

    name: str
    runs: list[tuple[str, datetime]]
    clock: Clock
    status: list[str] = field(default_factory=list)
    budget: ApiBudget | None = None
    holder: str | None = None
    adapter: FakeAdapter = field(default_factory=FakeAdapter)

    def run(self, *, trigger: str, should_stop: Any, slot_at: datetime | None = None) -> RunReport:
        status = self.status.pop(0) if self.status else "ok"
        if status == "locked":
            raise RunLocked(f"connection {self.name!r} is being synced by run 1")
        self.runs.append((trigger, self.clock()))
        status, _, resume = status.partition(
            "@")  # "interrupted@2026-11-27T01:17:00+00:00": with a resume time
        return RunReport(connection=self.name, run_id=len(self.runs), status=status,
                         resumes_at=datetime.fromisoformat(resume) if resume else None)


def settings(tmp_path: Path, schedule: str = "every 15 minutes", **conn_kw: Any) -> LoadedSettings:
    conn = Connection(crm="zoho", mapping="m.yaml", schedule=schedule, **conn_kw)
    s = Settings(
        database_url=f"sqlite:///{tmp_path}/s.db", connections={"zoho": conn},
        scheduler=SchedulerSettings(timezone="Asia/Shanghai", lease_seconds=60, heartbeat_seconds=15))
    return LoadedSettings(settings=s, path=tmp_path / "prepaid-sync.toml")


@pytest.fixture
def world(tmp_path: Path) -> tuple[LoadedSettings, Any, Clock, list]:
    loaded = settings(tmp_path)
    return loaded, make_engine(loaded.settings.database_url), Clock(T0), []


def worker(loaded: LoadedSettings, engine: Any, clock: Clock, runs: list, wid: str = "w1",
           status: list[str] | None = None) -> Worker:
    fake = FakeSyncEngine("zoho", runs, clock, status or [])
    return Worker(loaded, engine, worker_id=wid, clock=clock, build=lambda name: fake)  # type: ignore[arg-type,return-value]


def next_run(engine: Any) -> datetime:
    with engine.connect() as conn:
        return conn.execute(select(ot.schedule.c.next_run_at)).scalar()


def test_first_run_at_once_then_on_the_fire_times(world: tuple) -> None:
    loaded, engine, clock, runs = world
    w = worker(loaded, engine, clock, runs)
    w.poll()
    assert runs == [("schedule", T0)]
    assert next_run(engine) == datetime(2026, 11, 27, 1, 15, tzinfo=UTC)
    clock.advance(minutes=5)
    w.poll()
    assert len(runs) == 1
    clock.advance(minutes=3)  # 01:15
    w.poll()
    w.poll()
    assert [r[1] for r in runs] == [T0, datetime(2026, 11, 27, 1, 15, tzinfo=UTC)]
    assert next_run(engine) == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)


def test_missed_fire_times_coalesce_into_one_run_within_grace(tmp_path: Path) -> None:
    loaded = settings(tmp_path, misfire_grace_seconds=3 * 3600)
    engine, clock, runs = make_engine(loaded.settings.database_url), Clock(T0), []
    worker(loaded, engine, clock, runs).poll()
    clock.now = datetime(2026, 11, 27, 3, 2, tzinfo=UTC)  # seven fire times passed while no worker ran
    worker(loaded, engine, clock, runs, "restarted").poll()
    assert len(runs) == 2 and runs[1][1] == clock.now
    assert next_run(engine) == datetime(2026, 11, 27, 3, 15, tzinfo=UTC)


def test_a_run_later_than_the_grace_is_counted_missed_not_started(world: tuple) -> None:
    loaded, engine, clock, runs = world  # grace 600 s
    worker(loaded, engine, clock, runs).poll()
    clock.now = datetime(2026, 11, 27, 3, 2, tzinfo=UTC)
    worker(loaded, engine, clock, runs, "restarted").poll()
    assert len(runs) == 1
    with engine.connect() as conn:
        row = conn.execute(select(ot.schedule)).one()
    assert row.missed == 1 and row.next_run_at == datetime(2026, 11, 27, 3, 15, tzinfo=UTC)


def test_restart_neither_loses_nor_doubles(world: tuple) -> None:
    loaded, engine, clock, runs = world
    worker(loaded, engine, clock, runs).poll()
    clock.now = datetime(2026, 11, 27, 1, 15, 1, tzinfo=UTC)
    worker(loaded, engine, clock, runs, "first").poll()
    clock.advance(seconds=30)
    worker(loaded, engine, clock, runs, "after-restart").poll()  # same slot: already done
    assert len(runs) == 2
    clock.now = datetime(2026, 11, 27, 1, 33, tzinfo=UTC)  # down over the 01:30 slot, back within grace
    worker(loaded, engine, clock, runs, "again").poll()
    assert len(runs) == 3 and next_run(engine) == datetime(2026, 11, 27, 1, 45, tzinfo=UTC)


def test_two_workers_one_due_run_exactly_one_runs(world: tuple) -> None:
    loaded, engine, clock, runs = world
    workers = [worker(loaded, engine, clock, runs, f"w{i}") for i in range(3)]
    workers[0].book.prepare(clock())
    gate = threading.Barrier(3)

    def go(w: Worker) -> None:
        gate.wait()
        w.attempt("zoho")

    threads = [threading.Thread(target=go, args=(w,)) for w in workers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(runs) == 1


def test_a_dead_workers_claim_is_resumed_after_its_lease(world: tuple) -> None:
    loaded, engine, clock, runs = world
    dead = worker(loaded, engine, clock, runs, "dead")
    dead.book.prepare(clock())
    assert dead.book.claim("zoho", "dead", clock()) is not None  # claimed, then the process died
    other = worker(loaded, engine, clock, runs, "other")
    clock.advance(seconds=59)
    other.poll()
    assert runs == []
    clock.advance(seconds=2)
    other.poll()
    assert runs == [("recovery", clock.now)]
    with engine.connect() as conn:
        row = conn.execute(select(ot.schedule)).one()
    assert row.claimed_by is None and row.last_status == "ok"


def test_claims_are_kept_alive_while_running(world: tuple) -> None:
    loaded, engine, clock, runs = world
    w = worker(loaded, engine, clock, runs)
    w.book.prepare(clock())
    claim = w.book.claim("zoho", "w1", clock())
    assert claim is not None
    w._inflight["zoho"] = claim
    clock.advance(seconds=50)
    w.keep_claims()
    clock.advance(seconds=50)  # 100 s after the claim, but 50 s after the last extension
    assert worker(loaded, engine, clock, runs, "other").book.claim("zoho", "other", clock()) is None


def test_interrupted_run_resumes_at_once_and_locked_run_retries(world: tuple) -> None:
    loaded, engine, clock, runs = world
    w = worker(loaded, engine, clock, runs, status=["interrupted", "locked", "ok"])
    w.poll()
    assert next_run(engine) == clock.now  # interrupted by a signal: due again at once
    clock.advance(seconds=5)
    out = w.attempt("zoho")
    assert out is not None and out.action == "locked" and next_run(engine) == clock.now
    clock.advance(seconds=5)
    out = w.attempt("zoho")
    assert out is not None and out.status == "ok"
    assert next_run(engine) == datetime(2026, 11, 27, 1, 15, tzinfo=UTC)


def test_a_run_stopped_until_a_resume_time_is_not_started_before_it(world: tuple) -> None:
    loaded, engine, clock, runs = world
    resume = T0 + timedelta(minutes=10, seconds=3)  # the CRM's token-refresh window clears then
    w = worker(loaded, engine, clock, runs, status=[f"interrupted@{resume.isoformat()}", "ok"])
    w.poll()
    assert next_run(engine) == resume  # not at once, as after a signal
    clock.advance(minutes=10)
    w.poll()
    assert len(runs) == 1  # not due yet
    clock.advance(seconds=3)
    w.poll()
    assert len(runs) == 2 and runs[1][1] == resume


def test_budget_stop_waits_for_the_next_window_in_the_connection_zone(world: tuple) -> None:
    loaded, engine, clock, runs = world
    w = worker(loaded, engine, clock, runs, status=["budget"])
    from zoneinfo import ZoneInfo

    w.sync_engine("zoho").budget = ApiBudget(engine, "zoho", limit=10, unit="calls",
                                             tz=ZoneInfo("Asia/Shanghai"), clock=clock)
    w.poll()
    assert next_run(engine) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # midnight in Shanghai


def test_cron_fires_in_the_configured_zone(tmp_path: Path) -> None:
    loaded = settings(tmp_path, schedule="30 9 * * 1-5")
    conn = loaded.settings.connections["zoho"]
    friday = next_fire(loaded, conn, T0)
    assert friday == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)  # 09:30 Asia/Shanghai
    assert next_fire(loaded, conn, friday) == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)  # Monday


def test_changed_schedule_is_retimed(world: tuple, tmp_path: Path) -> None:
    loaded, engine, clock, runs = world
    worker(loaded, engine, clock, runs).poll()
    hourly = settings(tmp_path, schedule="0 * * * *")
    w = worker(hourly, engine, clock, runs, "w2")
    w.book.prepare(clock())
    assert next_run(engine) == datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def test_apscheduler_jobs_coalesce_never_overlap_and_have_grace(world: tuple) -> None:
    loaded, engine, clock, runs = world
    sched = worker(loaded, engine, clock, runs).scheduler()
    jobs = {j.id: j for j in sched.get_jobs()}
    job = jobs["sync:zoho"]
    assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 600
    assert str(job.trigger.timezone) == "Asia/Shanghai"
    assert {"poll", "claims"} <= set(jobs)


def test_once_runs_due_connections_and_returns(world: tuple) -> None:
    loaded, engine, clock, runs = world
    w = worker(loaded, engine, clock, runs)
    assert [o.status for o in w.run_once()] == ["ok"]
    assert w.run_once() == []  # nothing due any more


@pytest.mark.parametrize(("weekday", "names"), [("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"),
                                                ("*/2", "sun,tue,thu,sat"), ("1,3,5", "mon,wed,fri"),
                                                ("mon-fri", "mon-fri"), ("*", "*")])
def test_cron_weekdays_mean_what_cron_means(weekday: str, names: str) -> None:
    from connector.schedule_spec import parse_schedule

    assert parse_schedule(f"0 9 * * {weekday}") == f"0 9 * * {names}"


@pytest.mark.parametrize("bad",
                         ["* * * *", "every 0 minutes", "61 * * * *", "0 9 * * 8", "every 5 fortnights"])
def test_bad_schedules_are_refused_with_the_reason(bad: str) -> None:
    from connector.schedule_spec import parse_schedule

    with pytest.raises(ValueError, match="schedule"):
        parse_schedule(bad)


def test_a_run_that_cannot_start_is_a_failed_run_in_history_and_alerts(world: tuple) -> None:
    from connector.errors import ConfigError

    loaded, engine, clock, _runs = world
    notified: list[tuple[str, int]] = []

    def broken(name: str) -> Any:
        raise ConfigError("mappings/zoho.yaml: write_back.balance.crm: unknown field 'Prepaid_Balanse'")

    w = Worker(loaded, engine, worker_id="w1", clock=clock, build=broken,
               notify=lambda name, run_id: notified.append((name, run_id)))
    w.book.prepare(clock())
    out = w.attempt("zoho")
    assert out is not None and out.action == "error" and out.status == "failed"
    with engine.connect() as conn:
        row = conn.execute(select(t.runs)).one()
    assert row.status == "failed" and "could not start" in row.reason and "Prepaid_Balanse" in row.reason
    assert notified == [("zoho", row.id)]
    assert next_run(engine) == datetime(2026, 11, 27, 1, 15, tzinfo=UTC)  # tried again at the next fire time


def test_an_edited_mapping_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    import os

    loaded = settings(tmp_path)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("first")
    engine, clock, runs = make_engine(loaded.settings.database_url), Clock(T0), []
    built: list[str] = []

    def build(name: str) -> Any:
        built.append(mapping.read_text())
        return FakeSyncEngine(name, runs, clock)

    w = Worker(loaded, engine, worker_id="w1", clock=clock, build=build)
    w.sync_engine("zoho")
    w.sync_engine("zoho")
    assert built == ["first"]
    mapping.write_text("second")
    os.utime(mapping, (1e9, 1e9))  # a different mtime, whatever the file system's resolution
    w.sync_engine("zoho")
    assert built == ["first", "second"]
