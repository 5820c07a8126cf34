"""One sync run: lock -> pull every stream -> retry failed postings -> reconcile -> push the outbox.

A run ends early, at the next point where everything before it is committed, when `should_stop` asks
(a signal), when its lease is lost, or when the API budget would be passed; the outbox and cursors
make the next run carry on from there."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from connector.adapters.base import CrmAdapter
from connector.adapters.errors import CrmError
from connector.config import MassChangeGuard
from connector.errors import ConnectorError, MappingMismatch, ResumeLater, StorageFull
from connector.ledger import Ledger
from connector.db.engine import storage_full
from connector.timeutil import utcnow
from connector.logs import run_context
from connector.errors import RecordRejected
from connector.mapping.models import Mapping
from connector.db.rows import dumps
from connector.sync.cursors import get_cursor
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.sync.checks import preflight
from connector.sync.context import Ctx, RunReport, StopRequested
from connector.sync.dryrun import DryRunAdapter, scratch_engine
from connector.sync.fence import WriteFence
from connector.sync.guard import MassChangeHeld
from connector.sync.holds import INCOMPLETE_STAGE, hold
from connector.sync.lock import Heartbeat, LeaseLost, RunLock
from connector.sync.posting import retry_failed
from connector.sync.pull import run_stream, specs
from connector.sync.push import push
from connector.sync.reconcile import reconcile

log = logging.getLogger(__name__)
SKEW_WORTH_SAYING = timedelta(seconds=60)  # our clock vs the CRM's at the run's start (calls take a while)


class SyncEngine:
    """Runs syncs of one connection against one ledger database."""

    def __init__(self, connection: str, engine: Engine, adapter: CrmAdapter, mapping: Mapping, *,
                 clock: Callable[[], datetime] = utcnow, overlap: timedelta = timedelta(seconds=120),
                 progress: Callable[[str, int, int | None], None] | None = None,
                 holder: str | None = None, lease: timedelta = timedelta(seconds=60),
                 heartbeat: timedelta = timedelta(seconds=15), budget: ApiBudget | None = None,
                 lock_wait: timedelta = timedelta(seconds=10), guard: MassChangeGuard | None = None) -> None:
        self.connection = connection
        self.guard = guard or MassChangeGuard()
        self.holder = holder
        self.lease = lease
        self.lock_wait = lock_wait
        self.heartbeat = heartbeat
        self.budget = budget
        self.progress = progress
        self.engine = engine
        self.adapter = adapter
        self.mapping = mapping
        self.clock = clock
        self.overlap = overlap
        adapter.on_reject = self._rejected
        self._ctx: Ctx | None = None

    def _rejected(self, rejected: RecordRejected) -> None:
        """A record the adapter could not map; an incomplete one holds its customer (see `holds`)."""
        if self._ctx is None:
            return
        stage = INCOMPLETE_STAGE if rejected.incomplete else "pull"
        self._ctx.error(rejected.record, rejected.field, stage, rejected.reason)
        if rejected.incomplete:
            hold(self._ctx, rejected.record, rejected.customer_id)

    def run(self, *, full: bool = False, dry_run: bool = False, trigger: str = "manual",
            should_stop: Callable[[], str | None] | None = None, slot_at: datetime | None = None,
            allow_mass_change: bool = False, changes: bool | None = None) -> RunReport:
        """One run; with `dry_run` the database changes are thrown away (a SQLite copy, or a PostgreSQL
        transaction rolled back) and no CRM write is sent. `should_stop` returns a reason when the run
        must end at the next safe point (e.g. 'SIGTERM'); `slot_at` is the scheduled due time the run serves;
        `allow_mass_change` lets a plan over the mass-change guard's limits through (see `guard`).
        `changes`: whether the report lists each customer's changes (`RunReport.changes`); by default only a
        dry run's does (a real run's changes are in the database, and listing them all grows with them)."""
        keep = dry_run if changes is None else changes
        if dry_run:
            with scratch_engine(self.engine) as scratch:
                planner = SyncEngine(self.connection, scratch, DryRunAdapter(self.adapter, self.mapping),
                                     self.mapping, clock=self.clock, overlap=self.overlap,
                                     progress=self.progress, budget=self.budget, guard=self.guard)
                # a dry run writes nothing: it reports what the guard would hold instead of stopping there
                report = planner._run(full=full, trigger=trigger, should_stop=should_stop, lock=False,
                                      slot_at=None, allow_mass_change=True, changes=keep)
                report.dry_run = True
                return report
        return self._run(full=full, trigger=trigger, should_stop=should_stop, lock=True, slot_at=slot_at,
                         allow_mass_change=allow_mass_change, changes=keep)

    def _run(self, *, full: bool, trigger: str, should_stop: Callable[[], str | None] | None,
             lock: bool, slot_at: datetime | None, allow_mass_change: bool, changes: bool) -> RunReport:
        run_lock = RunLock(self.engine, self.connection, holder=self.holder, lease=self.lease,
                           wait=self.lock_wait) if lock else None
        if run_lock is None:
            return self._locked_run(full=full, trigger=trigger, should_stop=should_stop, run_lock=None,
                                    slot_at=slot_at, allow_mass_change=allow_mass_change, changes=changes)
        run_lock.acquire()  # RunLocked names the holder
        try:
            return self._locked_run(full=full, trigger=trigger, should_stop=should_stop, run_lock=run_lock,
                                    slot_at=slot_at, allow_mass_change=allow_mass_change, changes=changes)
        finally:
            try:
                run_lock.release()
            except (OperationalError, OSError) as exc:  # a full disk: the row goes with this process's pid
                if not storage_full(exc):
                    raise
                log.error("could not release the run lock of %s: %s", self.connection, exc)

    def _locked_run(self, *, full: bool, trigger: str, should_stop: Callable[[], str | None] | None,
                    run_lock: RunLock | None, slot_at: datetime | None, allow_mass_change: bool,
                    changes: bool) -> RunReport:
        started = self.clock()
        report = RunReport(connection=self.connection, started_at=started, trigger=trigger,
                           keep_changes=changes)
        # The run's own work goes through the guard (SQLite: every write transaction checks the lease
        # and the file).
        guard = WriteFence.for_run(run_lock, self.engine)
        work = guard.engine if guard is not None else self.engine
        ledger = Ledger(work, clock=self.clock)
        ctx = Ctx(connection=self.connection, engine=work, ledger=ledger, adapter=self.adapter,
                  mapping=self.mapping, clock=self.clock, overlap=self.overlap, report=report,
                  started_at=started, progress=self.progress, guard=self.guard,
                  allow_mass_change=allow_mass_change)
        run_id = self._open_run(started, trigger, run_lock, slot_at)
        ctx.run_id = report.run_id = run_id
        scope = ExitStack()  # log stamp and heartbeat, closed when the run ends however it ends
        scope.enter_context(run_context(run_id=ctx.run_id, connection=self.connection))
        beat = None
        if run_lock is not None:
            run_lock.bind(ctx.run_id)
            beat = scope.enter_context(Heartbeat(run_lock, self.heartbeat))
        self._ctx = ctx
        calls_before = self.adapter.usage().calls
        ctx.crm_clock = self.adapter.server_clock()
        if ctx.crm_clock is not None:
            ctx.crm_clock.mark()  # the CRM's time at the run's first answer is where this run's cursors go
        ctx.should_stop = _stop_check(beat, guard, should_stop)
        disk_full: StorageFull | None = None
        if self.budget is not None:
            self.adapter.set_gate(self.budget.charge)
        try:
            self._work(ctx, full)
        except MassChangeHeld as held:  # before any CRM write; a person decides (`--allow-mass-change`)
            report.status, report.reason = "held", held.reason
            log.warning("run %s of %s held: %s", ctx.run_id, self.connection, held.reason)
        except StopRequested as stop:
            report.status, report.reason = stop.status, stop.reason
            log.warning("run %s of %s stopped early: %s", ctx.run_id, self.connection, stop.reason)
        except ResumeLater as exc:
            # No later call of this run can succeed (a used-up budget or quota, no token): stop once,
            # say why and until when.
            report.status, report.resumes_at, report.reason = exc.run_status, exc.resume_at, exc.run_reason()
            log.warning("run %s of %s stopped: %s", ctx.run_id, self.connection, report.reason)
        except (CrmError, ConnectorError, LeaseLost) as exc:  # the run's failure (its reason), not a record's
            report.status = "failed"
            report.reason = str(exc)
        except (OperationalError, OSError) as exc:
            if not storage_full(exc):
                report.status, report.reason = "crashed", f"{type(exc).__name__}: {exc}"
                raise
            report.status = "failed"
            report.reason = self._disk_full_reason(exc)
            disk_full = StorageFull(report.reason)
        except BaseException as exc:
            report.status, report.reason = "crashed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            scope.close()
            if self.budget is not None:
                self.adapter.set_gate(None)
            self._ctx = None
            report.api_calls = self.adapter.usage().calls - calls_before
            report.finished_at = self.clock()
            report.crm_started_at = ctx.crm_clock.since_mark if ctx.crm_clock is not None else None
            _warn_if_skewed(started, report.crm_started_at)
            self._close_run(run_id, report)
        if disk_full is not None:
            raise disk_full
        return report

    def _open_run(self, started: datetime, trigger: str, run_lock: RunLock | None,
                  slot_at: datetime | None) -> int:
        """Insert the run's row (status "running") and answer its id."""
        with self.engine.begin() as conn:
            key = conn.execute(t.runs.insert().values(
                connection=self.connection, started_at=started, status="running", dry_run=False,
                pid=os.getpid(),
                worker=run_lock.holder if run_lock else self.holder, trigger=trigger,
                slot_at=slot_at)).inserted_primary_key
            assert key is not None  # an INSERT of one row answers its key
            return int(key[0])

    def _work(self, ctx: Ctx, full: bool) -> None:
        """The run's steps: check the mapping, pull every stream, retry, reconcile, push."""
        report = ctx.report
        try:
            preflight(self.adapter, self.mapping)
        except MappingMismatch as exc:
            report.problems = exc.problems
            raise
        for name, spec in specs(self.mapping).items():
            since = None if full else get_cursor(self.engine, self.connection, name)
            run_stream(ctx, name, spec, since)
        retry_failed(ctx, ["payment", "consumption"])
        reconcile(ctx)
        push(ctx)
        report.status = "ok" if report.error_total == 0 else "partial"

    def _disk_full_reason(self, exc: BaseException) -> str:
        return (f"the disk holding the database {self.engine.url.render_as_string(hide_password=True)} "
                f"is full ({getattr(exc, 'orig', None) or exc}); the run stopped: what it committed is "
                "kept, and the next run goes on from there once there is space")

    def _close_run(self, run_id: int, report: RunReport) -> None:
        """Write the run's end (status, reason, stats); a full disk is logged, not raised."""
        try:
            with self.engine.begin() as conn:
                conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(
                    status=report.status if report.status != "running" else "crashed",
                    reason=report.reason or None, finished_at=report.finished_at,
                    stats=dumps({k: v for k, v in report.to_dict().items() if k != "changes"})))
        except (OperationalError, OSError) as exc:
            if not storage_full(exc):
                raise
            log.error("could not record the end of run %s: %s", run_id, exc)


def _stop_check(beat: Heartbeat | None, guard: WriteFence | None,
                should_stop: Callable[[], str | None] | None) -> Callable[[], StopRequested | None]:
    """The run's stop question: a lost lease or database file first, then the caller's own reason."""

    def stop_check() -> StopRequested | None:
        if beat is not None and beat.lost:
            return StopRequested(beat.lost, "failed")
        lost = guard.problem() if guard is not None else None
        if lost is not None:
            return StopRequested(lost, "failed")
        why = should_stop() if should_stop is not None else None
        return StopRequested(why) if why else None

    return stop_check


def _warn_if_skewed(started: datetime, crm_started_at: datetime | None) -> None:
    if crm_started_at is not None and abs(crm_started_at - started) > SKEW_WORTH_SAYING:
        log.warning(
            "this machine's clock is %+.0f s off the CRM's (the CRM's time at the run's start: %s); "
            "cursors follow the CRM's clock", (started - crm_started_at).total_seconds(),
            crm_started_at.isoformat())
