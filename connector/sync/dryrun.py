"""Dry runs: a database nothing is kept in (a SQLite copy, or a PostgreSQL transaction always rolled back) and
an adapter that reads the CRM but only counts the writes it would send."""

from __future__ import annotations

import math
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from connector.adapters.base import (
    ApiUsage,
    CallGate,
    CrmAdapter,
    EntitySpec,
    FieldInfo,
    FieldUpdate,
    TaskRef,
    TaskRequest,
    WriteResult,
)
from connector.adapters.http import ServerClock
from connector.domain import Deletion, Record
from connector.errors import ConfigError
from connector.db.engine import make_engine
from connector.mapping.models import Mapping

SAVEPOINT = "prepaid_sync_dry_run"


@contextmanager
def scratch_engine(engine: Engine) -> Iterator[Engine]:
    """An engine whose changes are all thrown away when the block ends."""
    url = make_url(str(engine.url))
    backend = url.get_backend_name()
    if backend == "postgresql":
        with _rolled_back(engine) as scratch:
            yield scratch
        return
    if backend != "sqlite" or url.database in (None, "", ":memory:"):
        raise ConfigError(
            f"--dry-run works on a SQLite database file or PostgreSQL; this connection uses "
            f"{backend if backend != 'sqlite' else 'an in-memory SQLite database'}", field="database_url")
    with _sqlite_copy(str(url.database)) as scratch:
        yield scratch


@contextmanager
def _sqlite_copy(path: str) -> Iterator[Engine]:
    folder = Path(tempfile.mkdtemp(prefix="prepaid-sync-dry-"))
    target = folder / "plan.db"
    src = sqlite3.connect(path)
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


class _SavepointConnection:
    """A DBAPI connection inside one outer transaction: commit releases and re-opens a savepoint, rollback
    goes back to it, close keeps it open; nothing reaches the database until the outer transaction ends."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._sql(f"SAVEPOINT {SAVEPOINT}")

    def _sql(self, statement: str) -> None:
        cur = self._real.cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()

    def commit(self) -> None:
        """Keep the work so far (inside the outer transaction) and start a new savepoint."""
        self._sql(f"RELEASE SAVEPOINT {SAVEPOINT}")
        self._sql(f"SAVEPOINT {SAVEPOINT}")

    def rollback(self) -> None:
        """Undo the work since the last commit."""
        self._sql(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")

    def close(self) -> None:
        """The outer transaction owns the connection."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def _rolled_back(engine: Engine) -> Iterator[Engine]:
    pooled = engine.raw_connection()
    real = pooled.driver_connection
    if real is None:  # a pool connection always holds its driver connection while checked out
        raise RuntimeError("the pool handed out a connection without a driver connection")
    try:
        wrapped = _SavepointConnection(real)
        scratch = create_engine(engine.url, creator=lambda: wrapped, poolclass=StaticPool,
                                use_native_hstore=False)
        try:
            yield scratch
        finally:
            scratch.dispose()
    finally:
        real.rollback()
        pooled.close()


class DryRunAdapter(CrmAdapter):
    """Reads through to the real CRM; writes and task changes are only counted (and reported)."""

    def __init__(self, inner: CrmAdapter, mapping: Mapping) -> None:
        super().__init__(on_reject=inner.on_reject)
        self.inner = inner
        self.kind = inner.kind
        self.batch = mapping.write_batch_size
        self.planned_calls = 0
        self.deletion_check_interval = inner.deletion_check_interval

    def stream(self, spec: EntitySpec, since: datetime | None = None,
               overlap: timedelta = timedelta(seconds=0), *,
               deletions_since: datetime | None = None) -> Iterator[Record | Deletion]:
        """Read from the real CRM; the records it skips go to this adapter's `on_reject` meanwhile."""
        outer = self.inner.on_reject
        self.inner.on_reject = self.on_reject
        try:
            yield from self.inner.stream(spec, since, overlap, deletions_since=deletions_since)
        finally:
            self.inner.on_reject = outer

    def describe(self, module: str) -> list[FieldInfo]:
        """Read from the real CRM."""
        return self.inner.describe(module)

    def forget_metadata(self) -> None:
        """The real adapter's cache."""
        self.inner.forget_metadata()

    def can_hold(self, field_type: str, info: FieldInfo) -> bool:
        """The real adapter's table."""
        return self.inner.can_hold(field_type, info)

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

    def set_gate(self, gate: CallGate | None) -> None:
        """The real reads of a dry run are charged like any others."""
        self.inner.set_gate(gate)

    def server_clock(self) -> ServerClock | None:
        """The real CRM's clock."""
        return self.inner.server_clock()

    def usage(self) -> ApiUsage:
        """Real reads plus the writes it would send."""
        real = self.inner.usage()
        return ApiUsage(calls=real.calls + self.planned_calls, credits=real.credits, by_type=real.by_type)
