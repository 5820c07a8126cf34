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

import codecs
import csv
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine

from connector.errors import ConnectorError, CurrencyMismatch, IdempotencyConflict, InvalidInput
from connector.ledger import store
from connector.ledger.planners import Request, make_request
from connector.ledger.rules import AccountState
from connector.ledger.service import Ledger
from connector.ledger.writer import PlanWriter
from connector.timeutil import utcnow
from connector.timeutil import parse_datetime

REQUIRED = ("op", "customer", "amount", "currency", "key")
OPTIONAL = ("effective_at", "expires_at", "refundable", "priority", "source_system", "source_id", "memo")
CHUNK = 10000
STATE_CACHE = 100_000  # account states kept between chunks (~80 MB at two open lots each)
PENDING_UPDATES = 100_000  # lot remainders held back for the end of the file, at most
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass
class RowError:
    """One bad row: its line in the file, the column and why."""

    line: int
    column: str
    reason: str
    key: str = ""
    exit_code: int = InvalidInput.exit_code  # 2 invalid input, 3 refused by a ledger rule

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

    @property
    def exit_code(self) -> int:
        """0 without bad rows; 2 if any row is invalid input; else 3 (every bad row refused by a ledger
        rule)."""
        if not self.errors:
            return 0
        return min(e.exit_code for e in self.errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"rows": self.rows, "created": self.created, "exists": self.exists, "dry_run": self.dry_run,
                "applied": self.applied, "exit_code": self.exit_code,
                "errors": [{"line": e.line, "column": e.column, "reason": e.reason, "key": e.key,
                            "exit_code": e.exit_code} for e in self.errors]}


def _encoding(path: Path) -> str:
    """The file's text encoding from its first bytes: UTF-8 (BOM or not) or UTF-16 with a BOM; else a
    refusal."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise InvalidInput(f"{path}: the file is UTF-32; {_SAVE_AS}", field="file")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith(b"PK\x03\x04"):
        raise InvalidInput(f"{path}: this is a zip file (an Excel workbook?), not CSV text; {_SAVE_AS}",
                           field="file")
    if len(head) >= 2 and (head[1:2] == b"\x00") != (head[0:1] == b"\x00"):
        raise InvalidInput(f"{path}: the file looks like UTF-16 without a byte-order mark; {_SAVE_AS}",
                           field="file")
    return "utf-8"


_SAVE_AS = ("save it as UTF-8 (Excel: 'CSV UTF-8 (Comma delimited)') or as UTF-16 with a byte-order mark, "
            "and import it again; nothing was written")


def _not_decodable(path: Path, encoding: str) -> InvalidInput:
    """Where the first bytes that are not `encoding` are, for the refusal (only on the error path)."""
    name = "UTF-16" if encoding == "utf-16" else "UTF-8"
    if encoding == "utf-16":
        return InvalidInput(f"{path}: the file is not valid {name} text; {_SAVE_AS}", field="file")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = len(raw[:exc.start].decode("utf-8", errors="replace")) + 1
                bad = raw[exc.start:exc.start + 4]
                return InvalidInput(
                    f"{path}, line {number}, character {at}: the bytes {bad!r} are not UTF-8 "
                    f"(the file may be GBK/GB18030 or Windows-1252); {_SAVE_AS}", field="file")
    return InvalidInput(f"{path}: the file is not valid {name} text; {_SAVE_AS}", field="file")


class _Lines:
    """The file's lines for `csv.reader`, keeping the raw text of the record being read."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.record: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.fh.readline()
        if not line:
            raise StopIteration
        self.record.append(line)
        return line


def _field_over_limit(text: str, limit: int) -> int:
    """Index of the first field in one record's raw text that is longer than `limit` characters."""
    index, size, quoted, i = 0, 0, False, 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == '"' and text[i + 1:i + 2] == '"':
            size, i = size + 1, i + 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            index, size = index + 1, 0
        else:
            size += 1
            if size > limit:
                break
        i += 1
    return index


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    encoding = _encoding(path)
    try:
        with path.open(newline="", encoding=encoding) as fh:
            yield from _records(path, _Lines(fh))
    except UnicodeDecodeError:
        raise _not_decodable(path, encoding) from None


def _records(path: Path, lines: _Lines) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(lines)
    header: list[str] = []
    while True:
        lines.record.clear()
        try:
            values = next(reader)
        except StopIteration:
            if not header:
                raise InvalidInput(
                    f"{path}: the file is empty; expected a header row with {', '.join(REQUIRED)}",
                    field="header") from None
            return
        except csv.Error as exc:
            limit = csv.field_size_limit()
            if "field limit" not in str(exc):
                raise InvalidInput(f"{path}, line {reader.line_num}: not readable as CSV ({exc})",
                                   field="file") from None
            index = _field_over_limit("".join(lines.record), limit)
            column = header[index] if index < len(header) else f"field {index + 1}"
            raise InvalidInput(f"{path}, line {reader.line_num}, column {column}: the field is longer than "
                               f"{limit} characters, the most a CSV field may hold; nothing was written",
                               field=column) from None
        if not header:
            header = [h.strip().lower() for h in values]
            _check_header(path, header)
            continue
        if not "".join(values).strip():  # a blank line, or only separators
            continue
        line = reader.line_num
        if len(values) != len(header):
            yield line, {"__width__": f"has {len(values)} fields, the header has {len(header)}"}
            continue
        yield line, dict(zip(header, values, strict=True))


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(
                f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(REQUIRED + OPTIONAL)})"
            )
        raise InvalidInput(f"{path}, line 1: " + "; ".join(parts), field="header")


def _to_request(row: dict[str, str]) -> Request:
    """Validate one CSV row; InvalidInput names the column."""
    if "__width__" in row:
        raise InvalidInput(row["__width__"], field="*")
    if "\x00" in "".join(row.values()):
        for name, value in row.items():
            if "\x00" in value:
                raise InvalidInput(f"{name}: contains a NUL byte (0x00) at character "
                                   f"{value.index(chr(0)) + 1}; remove it (the file may not be UTF-8 text)",
                                   field=name)
    get = {name: value.strip() for name, value in row.items()}.get
    refundable: bool | None = None
    if flag := get("refundable", "").lower():
        if flag not in _TRUE and flag not in _FALSE:
            raise InvalidInput(f"{get('refundable')!r} is not true/false", field="refundable")
        refundable = flag in _TRUE
    priority = None
    if get("priority"):
        try:
            priority = int(get("priority", ""))
        except ValueError:
            raise InvalidInput(f"{get('priority')!r} is not a whole number", field="priority") from None
    system = get("source_system")
    source = (system, get("source_id", "")) if system else None
    return make_request(get("op", "").lower(), get("customer", ""), get("amount", ""), get("currency", ""),
                        get("key", ""), effective_at=_time(get("effective_at", ""), "effective_at", False),
                        expires_at=_time(get("expires_at", ""), "expires_at", True),
                        refundable=refundable, priority=priority, source=source, memo=get("memo", ""))


_TIMES: dict[tuple[str, str, bool], datetime | None] = {}


def _time(text: str, field: str, end_of_day: bool) -> datetime | None:
    """`parse_datetime`, remembering the answers: a file repeats a few dates many times."""
    known = (text, field, end_of_day)
    if known in _TIMES:
        return _TIMES[known]
    value = parse_datetime(text, field, end_of_day=end_of_day)
    if len(_TIMES) > 4096:
        _TIMES.clear()
    _TIMES[known] = value
    return value


def _error(line: int, exc: ConnectorError, key: str = "") -> RowError:
    column = str(exc.details.get("field", "")) or "-"
    reason = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{column}: ") else exc.message
    return RowError(line, column, reason, key, exc.exit_code)


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
            conn.info.pop("created_accounts", None)  # `ensure_accounts`' note for group commits, not ours
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
                conn.execution_options(
                    isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE) accounts, lots")
            else:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


class _Session:
    """State of one import transaction: cached account states and the plan writer."""

    def __init__(self, conn: Connection, now: Any,
                 deposit_guard: Callable[[Request], None] | None = None) -> None:
        self.conn = conn
        self.now = now
        self.ledger = Ledger(conn.engine, deposit_guard=deposit_guard)
        self.writer = PlanWriter(conn, now, batch_hint=CHUNK)
        self.states: dict[tuple[str, str], AccountState] = {}
        self.policies: dict[tuple[str, str], tuple[str, Decimal]] = {}

    def apply_chunk(self, batch: list[tuple[int, Request]], report: ImportReport, max_errors: int) -> None:
        """Plan and buffer one chunk of rows with the ledger's batch core; refusals become row errors."""
        if len(self.states) > STATE_CACHE:
            self.writer.flush()  # the cached balances and lot remainders, before their states go
            self.states.clear()
            self.policies.clear()
        reqs = [req for _, req in batch]
        store.lock_accounts(self.conn, {(r.customer, r.currency) for r in reqs}, self.now, states=self.states,
                            policies=self.policies)
        self.conn.info.pop("created_accounts", None)  # a note for group commits; the import needs none
        outcomes = self.ledger.apply_requests(self.conn, reqs, self.states, self.policies, self.writer,
                                              self.now, results=False)
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
        # New rows only: the balance and lot caches are written once, at the end (or past PENDING_UPDATES).
        self.writer.flush(updates=len(self.writer.lot_updates) > PENDING_UPDATES)


def import_text(engine: Engine, content: str, **kw: Any) -> ImportReport:
    """Import CSV given as text (tests and small tools)."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as fh:
        fh.write(content)
    try:
        return Importer(engine).run(fh.name, **kw)
    finally:
        Path(fh.name).unlink(missing_ok=True)
