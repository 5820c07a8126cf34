"""One sync run: lock -> pull every stream -> retry failed postings -> reconcile -> push the outbox."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from connector.adapters.base import CrmAdapter
from connector.adapters.errors import CrmError
from connector.errors import ConnectorError
from connector.ledger import Ledger
from connector.ledger.tables import utcnow
from connector.mapping.models import Mapping
from connector.sync import state
from connector.sync import tables as t
from connector.sync.context import Ctx, RunReport
from connector.sync.dryrun import DryRunAdapter, scratch_engine
from connector.sync.pull import retry_failed, run_stream, specs
from connector.sync.push import push
from connector.sync.reconcile import reconcile


class SyncEngine:
    """Runs syncs of one connection against one ledger database."""

    def __init__(self, connection: str, engine: Engine, adapter: CrmAdapter, mapping: Mapping, *,
                 clock: Callable[[], datetime] = utcnow, overlap: timedelta = timedelta(seconds=120),
                 progress: Callable[[str, int, int | None], None] | None = None) -> None:
        self.connection = connection
        self.progress = progress
        self.engine = engine
        self.adapter = adapter
        self.mapping = mapping
        self.clock = clock
        self.overlap = overlap
        if hasattr(adapter, "on_bad_record"):
            adapter.on_bad_record = self._bad_record
        if hasattr(adapter, "on_reject"):
            adapter.on_reject = self._rejected
        self._ctx: Ctx | None = None

    def _bad_record(self, bad: Any) -> None:
        if self._ctx is not None:
            self._ctx.error(bad.record, bad.field, "pull", bad.reason)

    def _rejected(self, rej: Any) -> None:
        if self._ctx is not None:
            self._ctx.error(f"{self.mapping.crm}:{rej.module}:{rej.crm_id}", rej.field, "pull", rej.reason)

    def run(self, *, full: bool = False, dry_run: bool = False) -> RunReport:
        """One run; with `dry_run` the database changes are thrown away (a SQLite copy, or a PostgreSQL
        transaction rolled back) and no CRM write is sent."""
        if dry_run:
            with scratch_engine(self.engine) as scratch:
                planner = SyncEngine(self.connection, scratch, DryRunAdapter(self.adapter, self.mapping),
                                     self.mapping, clock=self.clock, overlap=self.overlap, progress=self.progress)
                report = planner._run(full=full)
                report.dry_run = True
                return report
        return self._run(full=full)

    def _run(self, *, full: bool) -> RunReport:
        started = self.clock()
        report = RunReport(connection=self.connection, started_at=started)
        ledger = Ledger(self.engine, clock=self.clock)
        ctx = Ctx(connection=self.connection, engine=self.engine, ledger=ledger, adapter=self.adapter,
                  mapping=self.mapping, clock=self.clock, overlap=self.overlap, report=report, started_at=started,
                  progress=self.progress)
        with self.engine.begin() as conn:
            run_id = conn.execute(t.runs.insert().values(connection=self.connection, started_at=started,
                                                         status="running", dry_run=False, pid=os.getpid())
                                  ).inserted_primary_key[0]
            state.acquire_lock(conn, self.connection, run_id, started)
        ctx.run_id = report.run_id = int(run_id)
        self._ctx = ctx
        calls_before = self.adapter.usage().calls
        try:
            for name, spec in specs(self.mapping).items():
                since = None if full else state.get_cursor(self.engine, self.connection, name)
                run_stream(ctx, name, spec, since)
            retry_failed(ctx, ["payment", "consumption"])
            reconcile(ctx)
            push(ctx)
            report.status = "ok" if report.error_total == 0 else "partial"
        except (CrmError, ConnectorError) as exc:
            report.status = "failed"
            report.error_total += 1
            report.errors.append({"record": "", "field": "", "stage": "run", "reason": str(exc)})
        finally:
            self._ctx = None
            report.api_calls = self.adapter.usage().calls - calls_before
            report.finished_at = self.clock()
            with self.engine.begin() as conn:
                conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(
                    status=report.status if report.status != "running" else "crashed",
                    finished_at=report.finished_at, stats=state.dumps({k: v for k, v in report.to_dict().items()
                                                                       if k != "changes"})))
                state.release_lock(conn, self.connection, int(run_id))
        return report
