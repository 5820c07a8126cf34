"""One sync run: lock -> pull every stream -> retry failed postings -> reconcile -> push the outbox."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from connector.adapters.base import ApiUsage, CrmAdapter, EntitySpec, FieldInfo, FieldUpdate, TaskRef, TaskRequest, \
    WriteResult
from connector.adapters.errors import CrmError
from connector.domain import Deletion, Record
from connector.errors import ConfigError, ConnectorError
from connector.ledger import Ledger
from connector.ledger.db import make_engine
from connector.mapping.models import Mapping
from connector.sync import state
from connector.sync import tables as t
from connector.sync.context import Ctx, RunReport
from connector.sync.pull import STREAMS, retry_failed, run_stream, specs
from connector.sync.push import push
from connector.sync.reconcile import reconcile


def utcnow() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


class SyncEngine:
    """Runs syncs of one connection against one ledger database."""

    def __init__(self, connection: str, engine: Engine, adapter: CrmAdapter, mapping: Mapping, *,
                 clock: Callable[[], datetime] = utcnow, overlap: timedelta = timedelta(seconds=120)) -> None:
        self.connection = connection
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
        """One run; with `dry_run` everything happens on a throw-away copy of the database and no CRM write is sent."""
        if dry_run:
            with _scratch_copy(self.engine) as scratch:
                planner = SyncEngine(self.connection, scratch, DryRunAdapter(self.adapter, self.mapping),
                                     self.mapping, clock=self.clock, overlap=self.overlap)
                report = planner._run(full=full)
                report.dry_run = True
                scratch.dispose()
                return report
        return self._run(full=full)

    def _run(self, *, full: bool) -> RunReport:
        started = self.clock()
        report = RunReport(connection=self.connection, started_at=started)
        ledger = Ledger(self.engine, clock=self.clock)
        ctx = Ctx(connection=self.connection, engine=self.engine, ledger=ledger, adapter=self.adapter,
                  mapping=self.mapping, clock=self.clock, overlap=self.overlap, report=report, started_at=started)
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
                                                                       if k not in ("errors", "changes")})))
                state.release_lock(conn, self.connection, int(run_id))
        return report



def _scratch_copy(engine: Engine) -> Any:
    """A context manager giving an engine on a temporary copy of a SQLite database."""
    from contextlib import contextmanager

    @contextmanager
    def copy() -> Iterator[Engine]:
        url = make_url(str(engine.url))
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            raise ConfigError("--dry-run works on a SQLite database file (it plans on a throw-away copy); "
                              f"this connection uses {url.get_backend_name()}", field="database_url")
        folder = Path(tempfile.mkdtemp(prefix="prepaid-sync-dry-"))
        target = folder / "plan.db"
        src = sqlite3.connect(str(url.database))
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        scratch = make_engine(f"sqlite:///{target}")
        try:
            yield scratch
        finally:
            scratch.dispose()
            shutil.rmtree(folder, ignore_errors=True)

    return copy()


class DryRunAdapter(CrmAdapter):
    """Reads through to the real CRM; writes and task changes are only counted (and reported)."""

    def __init__(self, inner: CrmAdapter, mapping: Mapping) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.batch = mapping.write_batch_size
        self.planned_calls = 0
        self.on_bad_record = getattr(inner, "on_bad_record", None)
        self.on_reject = getattr(inner, "on_reject", None)

    def stream(self, spec: EntitySpec, since: datetime | None = None,
               overlap: timedelta = timedelta(seconds=0)) -> Iterator[Record | Deletion]:
        """Read from the real CRM."""
        for name in ("on_bad_record", "on_reject"):
            if hasattr(self.inner, name):
                setattr(self.inner, name, getattr(self, name))
        return self.inner.stream(spec, since, overlap)

    def describe(self, module: str) -> list[FieldInfo]:
        """Read from the real CRM."""
        return self.inner.describe(module)

    def write_fields(self, module: str, updates: Sequence[FieldUpdate]) -> list[WriteResult]:
        """Count the batch calls it would take; send nothing."""
        self.planned_calls += math.ceil(len(updates) / self.batch)
        return [WriteResult(crm_id=u.crm_id, ok=True, code="DRY_RUN") for u in updates]

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[TaskRef]:
        """Count one call per task; create nothing."""
        self.planned_calls += len(tasks)
        return [TaskRef(task_id=f"dry-run:{t.marker}", marker=t.marker, open=True, related_id=t.related_id)
                for t in tasks]

    def find_tasks(self, markers: Sequence[str]) -> list[TaskRef]:
        """Read from the real CRM."""
        return self.inner.find_tasks(markers)

    def close_task(self, task_id: str) -> None:
        """Count one call; close nothing."""
        self.planned_calls += 1

    def usage(self) -> ApiUsage:
        """Real reads plus the writes it would send."""
        real = self.inner.usage()
        return ApiUsage(calls=real.calls + self.planned_calls, credits=real.credits, by_type=real.by_type)
