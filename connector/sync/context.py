"""What one run carries around: engine, ledger, adapter, mapping, run id, clock, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from connector.adapters.base import CrmAdapter
from connector.adapters.http import ServerClock
from connector.config import MassChangeGuard
from connector.ledger import Ledger
from connector.mapping.models import Mapping
from connector.sync.orphans import payment_account
from connector.sync.record_errors import record_error


class StopRequested(Exception):
    """Raised at the next safe point (between pages and batches) when the run must end early."""

    def __init__(self, reason: str, status: str = "interrupted") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class RunReport:
    """The outcome of one run, as `sync run --json` prints it."""

    connection: str
    run_id: int = 0
    status: str = "running"
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pulled: dict[str, int] = field(default_factory=dict)
    deposits_posted: int = 0
    consumptions_posted: int = 0
    reversals_posted: int = 0
    terms_set: int = 0
    records_written: int = 0
    write_calls: int = 0
    tasks_created: int = 0
    tasks_closed: int = 0
    flags_opened: int = 0
    flags_cleared: int = 0
    customers_held: int = 0  # left as they were: a record of theirs came without a mapped field
    api_calls: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error_total: int = 0
    reason: str = ""
    trigger: str = "manual"
    resumes_at: datetime | None = None  # when status is "budget" (or a run-wide stop): not before this
    crm_started_at: datetime | None = None  # the CRM's clock when the run began (its first answer's Date)
    cursors_pulled_back: list[dict[str, Any]] = field(default_factory=list)  # stored cursors ahead of the CRM
    problems: list[dict[str,
                        str]] = field(default_factory=list)  # the mapping check's, when it stopped the run
    guard: dict[str, Any] | None = None  # what the mass-change guard saw, when the plan was over a limit
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep_changes: bool = True  # False: `customer` hands out a throwaway log and `changes` stays empty

    def customer(self, key: str) -> dict[str, Any]:
        """The per-customer change log (for the dry-run and demo report)."""
        log: dict[str, Any] = {"postings": [], "fields": {}, "tasks_open": [], "tasks_close": []}
        return self.changes.setdefault(key, log) if self.keep_changes else log

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("changes", "keep_changes")}
        out["changes"] = self.changes if self.dry_run else {}
        return out


@dataclass
class Ctx:
    """One run's collaborators."""

    connection: str
    engine: Engine
    ledger: Ledger
    adapter: CrmAdapter
    mapping: Mapping
    clock: Callable[[], datetime]
    overlap: timedelta
    report: RunReport
    run_id: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.min)
    max_errors_listed: int = 200
    progress: Callable[[str, int, int | None], None] | None = None
    should_stop: Callable[[], StopRequested | None] | None = None
    crm_clock: ServerClock | None = None  # the CRM's time as its answers state it: what cursors follow
    held: dict[str, str] = field(default_factory=dict)  # customer CRM id -> its incomplete record (`holds`)
    guard: MassChangeGuard | None = None  # the mass-change guard's limits (`guard`); None: no guard
    allow_mass_change: bool = False

    def tick(self, stage: str, done: int, total: int | None = None) -> None:
        """Tell the progress observer (if any) how far `stage` is; `total` None while it is unknown.

        Ticks fall between pages and batches, where everything before is committed: the place to stop
        when a signal, a lost lease or the API budget asks for it."""
        if self.progress is not None:
            self.progress(stage, done, total)
        if self.should_stop is not None:
            stop = self.should_stop()
            if stop is not None:
                raise stop

    def customer_key(self, crm_id: str) -> str:
        """Ledger customer key of a CRM customer id: `crm:module:id`, as `Record.key` spells it."""
        return f"{self.mapping.crm}:{self.mapping.customers.module}:{crm_id}"

    def account_of(self, kind: str, customer_id: str | None, crm_id: str) -> str:
        """The ledger customer key an item posts to: a payment without a customer gets a holding account."""
        if kind == "payment":
            return payment_account(self.customer_key(""), customer_id, crm_id)
        return self.customer_key(customer_id or "")

    def error(self, record: str, fld: str, stage: str, reason: str) -> None:
        """Record a per-record error (its own transaction) and list it in the report; the run goes on."""
        with self.engine.begin() as conn:
            self.error_in(conn, record, fld, stage, reason, self.clock())

    def error_in(self, conn: Connection, record: str, fld: str, stage: str, reason: str,
                 now: datetime) -> None:
        """`error` inside the caller's transaction `conn`."""
        record_error(conn, self.connection, self.run_id, record, fld, stage, reason, now)
        self.report.error_total += 1
        if len(self.report.errors) < self.max_errors_listed:
            self.report.errors.append({"record": record, "field": fld, "stage": stage, "reason": reason})
