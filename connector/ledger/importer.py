"""CSV import of postings: validate every row first, then apply all rows in one transaction.

Columns (header row required; names are case-insensitive; only the first five are mandatory):
`op` (deposit | consume | refund | adjust), `customer`, `amount`, `currency`, `key`,
`effective_at`, `expires_at`, `refundable` (true/false), `priority`, `source_system`,
`source_id`, `memo`.

A file with any bad row changes nothing: the report lists each bad row (file line number),
column and reason. Rows whose key was already posted with the same payload count as `exists`,
so importing the same file again changes nothing.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from connector.errors import ConnectorError, CurrencyMismatch, IdempotencyConflict, InvalidInput
from connector.ledger import store
from connector.ledger.ops import Request, make_request
from connector.ledger.rules import AccountState
from connector.ledger.service import Ledger
from connector.ledger.tables import utcnow
from connector.timeutil import parse_datetime

REQUIRED = ("op", "customer", "amount", "currency", "key")
OPTIONAL = ("effective_at", "expires_at", "refundable", "priority", "source_system", "source_id", "memo")
CHUNK = 10000
STATE_CACHE = 100_000  # account states kept between chunks (~80 MB at two open lots each)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass
class RowError:
    """One bad row: its line in the file, the column and why."""

    line: int
    column: str
    reason: str
    key: str = ""

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did (or, with errors or dry-run, would have done)."""

    rows: int = 0
    created: int = 0
    exists: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"rows": self.rows, "created": self.created, "exists": self.exists, "dry_run": self.dry_run,
                "applied": self.applied,
                "errors": [{"line": e.line, "column": e.column, "reason": e.reason, "key": e.key}
                           for e in self.errors]}


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise InvalidInput(f"{path}: the file is empty; expected a header row with {', '.join(REQUIRED)}",
                               field="header") from None
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown column(s) {', '.join(unknown)} (known: {', '.join(REQUIRED + OPTIONAL)})")
            raise InvalidInput(f"{path}, line 1: " + "; ".join(parts), field="header")
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            line = reader.line_num
            if len(values) != len(header):
                yield line, {"__width__": f"has {len(values)} fields, the header has {len(header)}"}
                continue
            yield line, dict(zip(header, values, strict=True))


def _to_request(row: dict[str, str]) -> Request:
    """Validate one CSV row; InvalidInput names the column."""
    if "__width__" in row:
        raise InvalidInput(row["__width__"], field="*")

    def get(name: str) -> str:
        value = row.get(name)
        return value.strip() if value else ""

    refundable: bool | None = None
    if get("refundable"):
        flag = get("refundable").lower()
        if flag not in _TRUE | _FALSE:
            raise InvalidInput(f"{get('refundable')!r} is not true/false", field="refundable")
        refundable = flag in _TRUE
    priority = None
    if get("priority"):
        try:
            priority = int(get("priority"))
        except ValueError:
            raise InvalidInput(f"{get('priority')!r} is not a whole number", field="priority") from None
    source = (get("source_system"), get("source_id")) if get("source_system") else None
    return make_request(get("op").lower(), get("customer"), get("amount"), get("currency"), get("key"),
                        effective_at=parse_datetime(get("effective_at"), "effective_at"),
                        expires_at=parse_datetime(get("expires_at"), "expires_at", end_of_day=True),
                        refundable=refundable, priority=priority, source=source, memo=get("memo"))


def _error(line: int, exc: ConnectorError, key: str = "") -> RowError:
    column = str(exc.details.get("field", "")) or "-"
    reason = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{column}: ") else exc.message
    return RowError(line, column, reason, key)


class Importer:
    """Imports one CSV file into a ledger database."""

    def __init__(self, engine: Engine, *, chunk: int = CHUNK,
                 deposit_guard: Callable[[Request], None] | None = None) -> None:
        self.engine = engine
        self.chunk = chunk
        self.deposit_guard = deposit_guard  # as in `Ledger`: may refuse new deposits by raising

    def run(self, path: str | Path, *, dry_run: bool = False, max_errors: int = 1000) -> ImportReport:
        """Check every row and apply them all in one transaction, or (any bad row, or `dry_run`) none.

        One pass: rows are validated and planned as they are read; after the first bad row the
        rest are still checked (so the report lists every bad row) and the transaction is rolled back.
        """
        path = Path(path)
        report = ImportReport(dry_run=dry_run)
        conn = self.engine.connect()
        conn.execution_options(ledger_write=True)
        trans = conn.begin()
        try:
            session = _Session(conn, utcnow(), self.deposit_guard)
            batch: list[tuple[int, Request]] = []
            for line, row in _rows(path):
                report.rows += 1
                try:
                    req = _to_request(row)
                except ConnectorError as exc:
                    if len(report.errors) < max_errors:
                        report.errors.append(_error(line, exc, (row.get("key") or "").strip()))
                    continue
                batch.append((line, req))
                if len(batch) >= self.chunk:
                    session.apply_chunk(batch, report, max_errors)
                    batch = []
            if batch:
                session.apply_chunk(batch, report, max_errors)
            session.writer.flush()
            report.errors.sort(key=lambda e: e.line)
            if report.errors or dry_run:
                trans.rollback()
            else:
                trans.commit()
                report.applied = True
        except BaseException:
            trans.rollback()
            raise
        finally:
            conn.close()
        if report.applied and report.created:
            self._after_bulk_load()
        return report


    def _after_bulk_load(self) -> None:
        # A bulk import leaves work that the next postings would otherwise pay for. PostgreSQL:
        # reclaim the dead row versions of accounts and lots and refresh the planner's statistics,
        # as its manual advises after bulk loads. SQLite: move the import out of the write-ahead log
        # into the database file now, rather than in the middle of a later single posting's commit.
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE) accounts, lots")
            else:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


class _Session:
    """State of one import transaction: cached account states and the plan writer."""

    def __init__(self, conn: Connection, now: Any, deposit_guard: Callable[[Request], None] | None = None) -> None:
        self.conn = conn
        self.now = now
        self.ledger = Ledger(conn.engine, deposit_guard=deposit_guard)
        self.writer = store.PlanWriter(conn, now, batch_hint=CHUNK)
        self.states: dict[tuple[str, str], AccountState] = {}
        self.policies: dict[tuple[str, str], tuple[str, Decimal]] = {}

    def apply_chunk(self, batch: list[tuple[int, Request]], report: ImportReport, max_errors: int) -> None:
        """Plan and buffer one chunk of rows with the ledger's batch core; refusals become row errors."""
        if len(self.states) > STATE_CACHE:
            self.writer.flush()
            self.states.clear()
            self.policies.clear()
        reqs = [req for _, req in batch]
        store.lock_accounts(self.conn, {(r.customer, r.currency) for r in reqs}, self.now, states=self.states,
                            policies=self.policies)
        outcomes = self.ledger.apply_requests(self.conn, reqs, self.states, self.policies, self.writer, self.now,
                                              results=False)
        for (line, req), outcome in zip(batch, outcomes, strict=True):
            if outcome.error is not None:
                if len(report.errors) < max_errors:
                    err = _error(line, outcome.error, req.key)
                    if err.column == "-":
                        err.column = ("key" if isinstance(outcome.error, IdempotencyConflict) else
                                      "currency" if isinstance(outcome.error, CurrencyMismatch) else "amount")
                    report.errors.append(err)
            elif outcome.status == "exists":
                report.exists += 1
            else:
                report.created += 1
        self.writer.flush()


def import_text(engine: Engine, content: str, **kw: Any) -> ImportReport:
    """Import CSV given as text (tests and small tools)."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as fh:
        fh.write(content)
    try:
        return Importer(engine).run(fh.name, **kw)
    finally:
        Path(fh.name).unlink(missing_ok=True)
