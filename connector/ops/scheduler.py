"""`prepaid-sync schedule`: a worker that runs each connection's syncs on its schedule.

APScheduler 3 times the runs: one job per connection with the connection's own trigger (interval or
cron, in its zone), `coalesce=True`, `max_instances=1` and the connection's misfire grace, plus a
poll job that picks up what the timers can't see (runs that fell due while no worker was up, runs
of a worker that died, alerts waiting for a retry). APScheduler 3's job stores can't be shared by
several schedulers, so who runs what is decided in the database instead (`connector.ops.book`), and
the run lock (`connector.sync.lock`) guarantees one run per connection whatever starts it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from connector import redact
from connector.config import LoadedSettings
from connector.errors import StorageFull
from connector.timeutil import utcnow
from connector.logs import run_context
from connector.ops.book import Book, Claim
from connector.schedule_spec import trigger
from connector.ops.signals import stop_signals
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.sync.lock import RunLocked, default_holder
from connector.sync.runner import SyncEngine

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one scheduled attempt did."""

    connection: str
    action: str  # ran | locked | error
    trigger: str = ""
    run_id: int | None = None
    status: str = ""
    reason: str = ""
    next_run_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**self.__dict__, "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None}


@dataclass
class Worker:
    """One scheduler process's view: its id, its database, the config, and the runs it has in hand."""

    loaded: LoadedSettings
    engine: Engine
    worker_id: str = field(default_factory=default_holder)
    clock: Callable[[], datetime] = utcnow
    build: Callable[[str], SyncEngine] | None = None
    notify: Callable[[str, int], object] | None = None
    deliver: Callable[[], object] | None = None
    renew: Callable[[], object] | None = None  # renews push channels that are due (every poll)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self.book = Book(self.engine, self.loaded)
        self._inflight: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[SyncEngine, float | None]] = {}
        self._idle = threading.Event()
        self._idle.set()

    # -- one attempt ---------------------------------------------------------------------------

    def sync_engine(self, name: str) -> SyncEngine:
        """The connection's SyncEngine, kept between runs so the CRM token is reused, and built again when
        its mapping file changes (an admin's edit takes effect on the next run, no restart needed)."""
        stamp = self._mapping_stamp(name)
        cached = self._engines.get(name)
        if cached is not None and cached[1] == stamp:
            return cached[0]
        if cached is not None:
            log.info("mapping of %s changed; using the new one from this run", name)
            cached[0].adapter.close()
            del self._engines[name]
        if self.build is not None:
            engine = self.build(name)
        else:
            from connector.app import build_sync_engine

            engine = build_sync_engine(self.loaded, name, self.engine, holder=self.worker_id)
        self._engines[name] = (engine, stamp)
        return engine

    def _mapping_stamp(self, name: str) -> float | None:
        conn = self.loaded.settings.connections.get(name)
        try:
            return self.loaded.mapping_path(conn).stat().st_mtime if conn is not None else None
        except OSError:
            return None

    def attempt(self, name: str) -> Outcome | None:
        """Claim and run the connection if it is due (or orphaned); None when there is nothing to do."""
        if self.stop_reason is not None:
            return None
        claim = self.book.claim(name, self.worker_id, self.clock())
        if claim is None:
            return None
        with self._lock:
            self._inflight[name] = claim
            self._idle.clear()
        try:
            with run_context(connection=name):
                outcome = self._run(claim)
        finally:
            with self._lock:
                self._inflight.pop(name, None)
                if not self._inflight:
                    self._idle.set()
        return outcome

    def _run(self, claim: Claim) -> Outcome:
        name = claim.connection
        try:
            engine = self.sync_engine(name)
            report = engine.run(trigger=claim.trigger, should_stop=lambda: self.stop_reason,
                                slot_at=claim.slot_at)
        except StorageFull as exc:
            # nothing can be recorded either; the claim's lease runs out and it is retried
            log.error("run of %s stopped: %s", name, exc)
            return Outcome(name, "error", claim.trigger, None, "failed", str(exc))
        except RunLocked as exc:  # a manual run holds it: try again at the next poll
            nxt = self.book.finish(claim, self.worker_id, self.clock(), status="locked", run_id=None,
                                   again_now=True)
            log.info("%s", exc)
            return Outcome(name, "locked", claim.trigger, reason=str(exc), next_run_at=nxt)
        except Exception as exc:  # noqa: BLE001 - a worker outlives one bad run (a broken mapping, ...)
            log.exception("run of %s could not start", name)
            run_id = self._record_failed_start(claim, exc)  # so that status, history and alerts see it
            nxt = self.book.finish(claim, self.worker_id, self.clock(), status="failed", run_id=run_id)
            self._notify(name, run_id)
            return Outcome(name, "error", claim.trigger, run_id, "failed", str(exc), nxt)
        budget: ApiBudget | None = engine.budget
        # a run-wide stop (token limit, the CRM's allowance) says when it clears
        not_before = report.resumes_at
        if report.status == "budget" and not_before is None:
            not_before = budget.next_window(self.clock()) if budget else None
        # Interrupted by a signal or a lost lease: due again at once; by a limit that clears later: not
        # before then.
        again_now = report.status == "interrupted" and not_before is None
        nxt = self.book.finish(claim, self.worker_id, self.clock(), status=report.status,
                               run_id=report.run_id, not_before=not_before, again_now=again_now)
        log.info("run %s of %s (%s): %s%s; next run %s", report.run_id, name, claim.trigger, report.status,
                 f" ({report.reason})" if report.reason else "", nxt.isoformat())
        self._notify(name, report.run_id)
        return Outcome(name, "ran", claim.trigger, report.run_id, report.status, report.reason, nxt)

    def _notify(self, name: str, run_id: int) -> None:
        if self.notify is not None:
            try:
                self.notify(name, run_id)
            except Exception:  # noqa: BLE001 - alerts never fail a run
                log.exception("alerting after run %s failed", run_id)

    def _record_failed_start(self, claim: Claim, exc: Exception) -> int:
        """A run that could not even start (its mapping broken, say) is still a failed run in history."""
        now = self.clock()
        reason = redact.text(f"could not start: {exc}")
        stats = {
            "status": "failed", "error_total": 1,
            "errors": [{"record": "", "field": "", "stage": "start", "reason": reason}]
        }
        with self.engine.begin() as db:
            key = db.execute(t.runs.insert().values(
                connection=claim.connection, started_at=now, finished_at=now, status="failed", dry_run=False,
                pid=os.getpid(), worker=self.worker_id, trigger=claim.trigger, slot_at=claim.slot_at,
                reason=reason, stats=json.dumps(stats))).inserted_primary_key
            assert key is not None  # a single-row INSERT always reports the key it made
            return int(key[0])

    # -- loops ---------------------------------------------------------------------------------

    def poll(self) -> None:
        """Prepare rows, run whatever is due or orphaned, keep claims alive, deliver waiting alerts."""
        if self.stop_reason is not None:
            return
        self.book.prepare(self.clock())
        for name in self.book.scheduled():
            self.attempt(name)
        for job, what in ((self.deliver, "alert delivery"), (self.renew, "push channel renewal")):
            if job is not None:
                try:
                    job()
                except Exception:  # noqa: BLE001
                    log.exception("%s failed", what)

    def run_once(self) -> list[Outcome]:
        """`--once`: run every due connection once, then return."""
        self.book.prepare(self.clock())
        done = []
        for name in self.book.scheduled():
            out = self.attempt(name)
            if out is not None:
                done.append(out)
        if self.deliver is not None:
            self.deliver()
        if self.renew is not None:
            self.renew()  # a cron-driven worker renews push channels too
        return done

    def keep_claims(self) -> None:
        """Extend the leases of the runs in hand (called every heartbeat)."""
        with self._lock:
            names = list(self._inflight)
        if names:
            self.book.extend(names, self.worker_id, self.clock())

    def scheduler(self) -> BackgroundScheduler:
        """The APScheduler that drives this worker (not started)."""
        sched_cfg = self.loaded.settings.scheduler
        scheduled = self.book.scheduled()
        sched = BackgroundScheduler(timezone=timezone.utc,
                                    executors={"default": ThreadPoolExecutor(max_workers=len(scheduled) + 2)},
                                    job_defaults={"coalesce": True, "max_instances": 1})
        for name, conn in scheduled.items():
            assert conn.schedule is not None
            sched.add_job(self.attempt, trigger(conn.schedule, self.loaded.settings.zone(conn)), args=[name],
                          id=f"sync:{name}", name=f"sync {name}", coalesce=True, max_instances=1,
                          misfire_grace_time=conn.misfire_grace_seconds)
        sched.add_job(self.poll, IntervalTrigger(seconds=sched_cfg.poll_seconds), id="poll", name="poll",
                      coalesce=True, max_instances=1, misfire_grace_time=None,
                      next_run_time=datetime.now(timezone.utc))
        sched.add_job(self.keep_claims, IntervalTrigger(seconds=sched_cfg.heartbeat_seconds), id="claims",
                      name="keep claims", coalesce=True, max_instances=1, misfire_grace_time=None)
        return sched

    def request_stop(self, reason: str) -> None:
        """Ask runs in hand to stop after their current batch, and start no new one."""
        self.stop_reason = reason

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in hand; False if `timeout` seconds passed first."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Release HTTP sessions."""
        for engine, _stamp in self._engines.values():
            engine.adapter.close()


def worker_signals(worker: Worker, stopped: threading.Event | None = None
                   ) -> AbstractContextManager[Callable[[], str | None]]:
    """A worker's SIGTERM/SIGINT: the run in hand stops after its batch and no new one starts; a second
    signal exits 1 at once."""

    def first(name: str) -> None:
        log.warning("%s: finishing the current batch, then exiting (send it again to abort now)", name)
        worker.request_stop(name)
        if stopped is not None:
            stopped.set()

    return stop_signals(
        first, lambda name: log.error("%s again: aborting now; the next run completes what was "
                                      "left", name))


def serve(worker: Worker, *, install_signals: bool = True, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or until `stop` is set); return the exit code (0: stopped cleanly within
    the bound).

    The first signal lets the current run finish its batch and persist, and starts no new run; a
    second signal exits at once (the outbox and leases make that safe: the next run completes it).
    A caller that owns the signals (`serve --schedule`) passes `install_signals=False` and its own
    `stop`, after `worker.request_stop(...)`."""
    stop = stop or threading.Event()
    with worker_signals(worker, stop) if install_signals else nullcontext():
        return _serve(worker, stop)


def _serve(worker: Worker, stop: threading.Event) -> int:
    sched = worker.scheduler()
    sched.start()
    log.info("worker %s started: %s", worker.worker_id,
             ", ".join(f"{j.name} next {j.next_run_time:%Y-%m-%d %H:%M:%S %Z}" for j in sched.get_jobs()
                       if j.next_run_time is not None))
    while not stop.wait(0.5):
        pass
    sched.shutdown(wait=False)
    bound = worker.loaded.settings.scheduler.shutdown_seconds
    clean = worker.wait_idle(bound)
    if not clean:
        log.error(
            "the current run did not stop within %ss; exiting anyway (its lease will expire and another "
            "worker resumes it)", bound)
        return 1
    worker.close()
    log.info("worker %s stopped", worker.worker_id)
    return 0
