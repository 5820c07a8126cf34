"""Run history and per-connection status: read-only queries behind `prepaid-sync status` and `runs`.

Every function here only reads. Each answer is a pydantic model (so `--json` is `model_dump(mode="json")`),
built from a handful of set-based queries per connection that run unchanged on SQLite and PostgreSQL.
Times come back aware; `connection_status` gives them in the connection's zone, the run listings in the
zone passed in `zones` (UTC when none).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, and_, func, select
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Row

from connector import redact
from connector.config import LoadedSettings
from connector.errors import NotFound
from connector.ops.book import next_fire
from connector.ops.history import failure_streak, run_reason, stats_of
from connector.timeutil import zone
from connector.ops import tables as ot
from connector.sync import tables as t
from connector.sync.budget import ApiBudget

#: keys of the run report that are not counts of work done
_NOT_COUNTS = frozenset({"run_id", "api_calls", "error_total", "dry_run"})
_OUTBOX_PENDING = ("planned", "sending")
_ALERTS_PENDING = ("pending", "sending")


class RunRow(BaseModel):
    """One recorded run, as `prepaid-sync runs` lists it."""

    id: int
    connection: str
    status: str = Field(
        description="as recorded, except a 'running' row whose lock is gone, shown as 'crashed'")
    recorded_status: str
    dry_run: bool
    trigger: str | None
    worker: str | None
    pid: int | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    api_calls: int | None
    error_total: int | None
    reason: str | None = Field(description="why it stopped when it did not end ok")
    counts: dict[str, int] = Field(default_factory=dict, description="work done: pulled (all streams), "
                                   "deposits_posted, records_written, tasks_created, ...")


class ListedError(BaseModel):
    """One per-record error as the run report listed it (the first 200 of a run)."""

    record: str = ""
    field: str = ""
    stage: str = ""
    reason: str = ""


class ErrorRow(BaseModel):
    """A `sync_errors` row: a record that failed, last hit by the run it names."""

    record: str
    field: str
    stage: str
    reason: str
    first_seen: datetime
    last_seen: datetime
    attempts: int
    resolved_at: datetime | None


class RunDetail(BaseModel):
    """One run with its counts and errors (`prepaid-sync runs show RUN_ID`)."""

    run: RunRow
    pulled: dict[str, int] = Field(default_factory=dict, description="records read per stream")
    errors_listed: list[ListedError] = Field(default_factory=list, description="from the run report")
    error_rows: list[ErrorRow] = Field(default_factory=list, description="sync_errors rows this run hit last")
    still_open: int = Field(description="of error_rows, how many still fail")
    connection_open: int = Field(description="records of this connection still failing, from any run")


class LastRun(BaseModel):
    """The newest recorded (non dry-run) run of a connection."""

    id: int
    status: str
    trigger: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    counts: dict[str, int]
    api_calls: int | None
    error_total: int | None
    reason: str | None


class Running(BaseModel):
    """The lock row of the run holding the connection now."""

    run_id: int
    holder: str | None
    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime | None
    lease_until: datetime | None
    stale: bool = Field(
        description="the lease expired: the holder stopped heart-beating; a worker will take over")


class Budget(BaseModel):
    """API use of the connection's current day (in its zone) against its daily budget."""

    day: str
    unit: str
    used_today: int
    budget: int | None
    remaining: int | None


class FailedRows(BaseModel):
    """Work waiting for a retry."""

    errors_open: int = Field(description="records whose last attempt failed (sync_errors not resolved)")
    outbox_failed: int = Field(description="CRM writes or task changes that failed and will be retried")
    outbox_pending: int = Field(description="planned or being sent")
    outbox_dead: int = Field(description="given up; needs a person")


class ConnectionStatus(BaseModel):
    """What an operator needs to know about one connection at a glance."""

    connection: str
    crm: str
    zone: str = Field(description="zone the times below are given in")
    now: datetime
    schedule: str | None = Field(description="the schedule text, None = not scheduled")
    next_run_at: datetime | None
    next_run_source: Literal["scheduler", "config"] | None = Field(
        description=
        "'scheduler' = the workers' schedule table; 'config' = computed (no worker has claimed it yet)")
    missed: int = Field(0, description="runs skipped because they were due longer ago than the misfire grace")
    last_run: LastRun | None = Field(description="the newest run, possibly still running")
    last_finished: LastRun | None = Field(description="the newest run that ended (ok, failed, crashed, ...): "
                                          "last_run itself unless that is still running")
    running: Running | None
    consecutive_failures: int
    budget: Budget
    open_flags: dict[str, int]
    failed_rows: FailedRows
    alerts_pending: int
    alerts_dead: int


def _local(value: datetime | None, tz: tzinfo) -> datetime | None:
    return value.astimezone(tz) if value is not None else None


def _counts(stats: Mapping[str, Any]) -> dict[str, int]:
    counts = {}
    pulled = stats.get("pulled")
    if isinstance(pulled, dict):
        counts["pulled"] = sum(v for v in pulled.values() if isinstance(v, int))
    for key, value in stats.items():
        if key not in _NOT_COUNTS and isinstance(value, int) and not isinstance(value, bool):
            counts[key] = value
    return counts


def _reason(row: Row[Any], status: str) -> str | None:
    if status == "crashed" and row.status == "running" and not row.reason:
        return "process ended mid-run (its lock is gone)"
    return run_reason(row) or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_row(row: Row[Any], locked_run: int | None, tz: tzinfo) -> RunRow:
    stats = stats_of(row)
    status = "crashed" if row.status == "running" and locked_run != row.id else row.status
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
    return RunRow(id=row.id, connection=row.connection, status=status, recorded_status=row.status,
                  dry_run=bool(row.dry_run), trigger=row.trigger, worker=row.worker, pid=row.pid,
                  started_at=row.started_at.astimezone(tz), finished_at=_local(row.finished_at, tz),
                  duration_s=duration, api_calls=_int(stats.get("api_calls")),
                  error_total=_int(stats.get("error_total")), reason=_reason(row, status),
                  counts=_counts(stats))


def _runs_query() -> Any:
    # The lock row (if any) of the same run says whether a 'running' row is still alive.
    return (select(t.runs, t.locks.c.run_id.label("locked_run"))
            .select_from(t.runs.outerjoin(t.locks, and_(t.locks.c.connection == t.runs.c.connection,
                                                        t.locks.c.run_id == t.runs.c.id))))


def list_runs(engine: Engine, connection: str | None = None, limit: int = 20, *,
              zones: Mapping[str, tzinfo] | None = None) -> list[RunRow]:
    """The newest `limit` runs (of one connection, or all), newest first; times in `zones[connection]` or
    UTC."""
    query = _runs_query().order_by(t.runs.c.id.desc()).limit(max(limit, 0))
    if connection is not None:
        query = query.where(t.runs.c.connection == connection)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    zones = zones or {}
    return [_run_row(r, r.locked_run, zones.get(r.connection, UTC)) for r in rows]


def run_detail(engine: Engine, run_id: int, *, zones: Mapping[str, tzinfo] | None = None) -> RunDetail:
    """One run: its row, counts, the errors its report listed and the sync_errors rows it hit last.

    Raises NotFound (exit code 2) for an unknown id.
    """
    with engine.connect() as conn:
        row = conn.execute(_runs_query().where(t.runs.c.id == run_id)).first()
        if row is None:
            newest = conn.execute(select(func.max(t.runs.c.id))).scalar()
            have = f"runs go up to {newest}" if newest else "no run is recorded yet"
            raise NotFound(f"no run with id {run_id} ({have}); see `prepaid-sync runs`", run_id=run_id)
        error_rows = conn.execute(select(t.errors).where(t.errors.c.connection == row.connection,
                                                         t.errors.c.run_id == run_id)
                                  .order_by(t.errors.c.stage, t.errors.c.record)).all()
        connection_open = conn.execute(select(func.count()).select_from(t.errors).where(
            t.errors.c.connection == row.connection, t.errors.c.resolved_at.is_(None))).scalar_one()
    tz = (zones or {}).get(row.connection, UTC)
    stats = stats_of(row)
    given = stats.get("pulled")
    pulled: dict[str, Any] = given if isinstance(given, dict) else {}
    listed = [
        ListedError(**{k: redact.text(str(e.get(k) or ""))
                       for k in ("record", "field", "stage", "reason")}) for e in stats.get("errors") or []
        if isinstance(e, dict)
    ]
    errs = [ErrorRow(record=e.record, field=e.field, stage=e.stage, reason=redact.text(e.reason),
                     first_seen=e.first_seen.astimezone(tz), last_seen=e.last_seen.astimezone(tz),
                     attempts=e.attempts, resolved_at=_local(e.resolved_at, tz)) for e in error_rows]
    return RunDetail(run=_run_row(row, row.locked_run,
                                  tz), pulled={k: v
                                               for k, v in pulled.items()
                                               if isinstance(v, int)}, errors_listed=listed, error_rows=errs,
                     still_open=sum(e.resolved_at is None for e in errs), connection_open=connection_open)


def _grouped(conn: DbConnection, table: Any, key: Any, *where: Any) -> dict[str, int]:
    return {k: int(n) for k, n in conn.execute(select(key, func.count()).select_from(table).where(*where)
                                                 .group_by(key)).all()}


def _last(row: Row[Any] | None, locked_run: int | None, tz: tzinfo) -> LastRun | None:
    if row is None:
        return None
    r = _run_row(row, locked_run, tz)
    return LastRun(id=r.id, status=r.status, trigger=r.trigger, started_at=r.started_at,
                   finished_at=r.finished_at, duration_s=r.duration_s, counts=r.counts, api_calls=r.api_calls,
                   error_total=r.error_total, reason=r.reason)


def connection_status(engine: Engine, loaded: LoadedSettings, name: str,
                      now: datetime | None = None) -> ConnectionStatus:
    """Status of one configured connection (raises ConfigError for an unknown name)."""
    settings = loaded.settings
    name, conn_cfg = settings.connection(name)
    now = now or datetime.now(UTC)
    zone_name = settings.zone(conn_cfg)
    tz = zone(zone_name)
    meter = ApiBudget(engine, name, limit=conn_cfg.daily_api_budget, unit=conn_cfg.unit(), tz=tz)
    with engine.connect() as conn:
        lock = conn.execute(select(t.locks).where(t.locks.c.connection == name)).first()
        locked_run = lock.run_id if lock is not None else None
        newest = _runs_query().where(t.runs.c.connection == name, t.runs.c.dry_run.is_(False)) \
            .order_by(t.runs.c.id.desc()).limit(1)
        last = conn.execute(newest).first()
        # Only the run holding the lock is still running; any older one has ended one way or another.
        ended = conn.execute(newest.where(t.runs.c.id < last.id)).first() \
            if last is not None and last.status == "running" and last.id == locked_run else last
        failures = failure_streak(conn, name, live=locked_run)
        sched = conn.execute(select(ot.schedule).where(ot.schedule.c.connection == name)).first()
        flags = _grouped(conn, t.flags, t.flags.c.code, t.flags.c.connection == name,
                         t.flags.c.cleared_at.is_(None))
        errors_open = conn.execute(select(func.count()).select_from(t.errors).where(
            t.errors.c.connection == name, t.errors.c.resolved_at.is_(None))).scalar_one()
        outbox = _grouped(conn, t.outbox, t.outbox.c.status, t.outbox.c.connection == name,
                          t.outbox.c.status.in_(("failed", "dead", *_OUTBOX_PENDING)))
        alerts = _grouped(conn, ot.alerts, ot.alerts.c.status, ot.alerts.c.connection == name,
                          ot.alerts.c.status.in_(("dead", *_ALERTS_PENDING)))

    last_run = _last(last, locked_run, tz)
    last_finished = last_run if ended is last else _last(ended, locked_run, tz)
    running = None
    if lock is not None:
        running = Running(run_id=lock.run_id, holder=lock.holder, host=lock.host, pid=lock.pid,
                          since=lock.acquired_at.astimezone(tz), heartbeat_at=_local(lock.heartbeat_at, tz),
                          lease_until=_local(lock.lease_until, tz),
                          stale=lock.lease_until is not None and lock.lease_until < now)
    next_run_at = None
    source: Literal["scheduler", "config"] | None = None
    if conn_cfg.schedule:
        if sched is not None:
            next_run_at, source = sched.next_run_at, "scheduler"
        else:
            next_run_at, source = next_fire(loaded, conn_cfg, now), "config"
    used, limit = meter.used(now), conn_cfg.daily_api_budget
    return ConnectionStatus(
        connection=name, crm=conn_cfg.crm, zone=zone_name or str(tz), now=now.astimezone(tz),
        schedule=conn_cfg.schedule, next_run_at=_local(next_run_at, tz), next_run_source=source,
        missed=int(sched.missed or 0) if sched is not None else 0, last_run=last_run,
        last_finished=last_finished, running=running,
        consecutive_failures=failures,
        budget=Budget(day=meter.day(now), unit=conn_cfg.unit(), used_today=used, budget=limit,
                      remaining=max(limit - used, 0) if limit is not None else None),
        open_flags=dict(sorted(flags.items())),
        failed_rows=FailedRows(errors_open=int(errors_open), outbox_failed=outbox.get("failed", 0),
                               outbox_pending=sum(outbox.get(s, 0) for s in _OUTBOX_PENDING),
                               outbox_dead=outbox.get("dead", 0)),
        alerts_pending=sum(alerts.get(s, 0) for s in _ALERTS_PENDING), alerts_dead=alerts.get("dead", 0))


def all_statuses(engine: Engine, loaded: LoadedSettings, names: list[str] | None = None,
                 now: datetime | None = None) -> list[ConnectionStatus]:
    """`connection_status` of the named connections (default: every configured one), in config order."""
    now = now or datetime.now(UTC)
    return [connection_status(engine, loaded, n, now) for n in (names or list(loaded.settings.connections))]
