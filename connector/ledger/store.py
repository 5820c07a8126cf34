"""Persistence for postings: account locks, state loading, id reservation and the plan writer.

Both the single-posting path and the bulk importer write through `PlanWriter`, which buffers
rows and flushes them with `executemany`; ids are reserved up front so allocations can point at
entries and lots before they are flushed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Boolean, Connection, Integer, String, and_, any_, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector.ledger.plan import NewLot, Plan
from connector.ledger.rules import AccountState, EntryState, LotState
from connector.ledger.tables import Account, Allocation, Entry, Lot, Posting, Terms, UTCDateTime
from connector.money import fmt

accounts = Account.__table__  # type: ignore[attr-defined]
lots = Lot.__table__  # type: ignore[attr-defined]
entries = Entry.__table__  # type: ignore[attr-defined]
allocations = Allocation.__table__  # type: ignore[attr-defined]
postings = Posting.__table__  # type: ignore[attr-defined]
terms = Terms.__table__  # type: ignore[attr-defined]


def is_postgres(conn: Connection) -> bool:
    """True when the connection talks to PostgreSQL."""
    return conn.dialect.name == "postgresql"


def ensure_account(conn: Connection, customer: str, currency: str, now: datetime) -> None:
    """Create the account row if it is missing (a concurrent creator wins harmlessly)."""
    ensure_accounts(conn, [(customer, currency)], now)


def ensure_accounts(conn: Connection, pairs: list[tuple[str, str]], now: datetime) -> None:
    """Create many missing accounts in one statement (bulk import)."""
    if not pairs:
        return
    ins = pg_insert(accounts) if is_postgres(conn) else sqlite_insert(accounts)
    conn.execute(ins.on_conflict_do_nothing(index_elements=["customer_key", "currency"]),
                 [{"customer_key": c, "currency": cur, "balance": 0, "debt": 0, "credit_limit": 0,
                   "created_at": now, "updated_at": now} for c, cur in pairs])


# Hot-path statements are prepared once as `text()` with typed result columns: building
# expression trees per call cost more than the database work of a posting.
_ACCOUNT_SQL = ("SELECT id, customer_key, currency, balance, debt, credit_limit FROM accounts "
                "WHERE customer_key = :customer AND currency = :currency")
_SELECT_ACCOUNT = text(_ACCOUNT_SQL)
_LOCK_ACCOUNT = text(_ACCOUNT_SQL + " FOR UPDATE")
_OPEN_LOTS = text("SELECT id, amount, remaining, effective_at, expires_at, refundable, priority FROM lots "
                  "WHERE account_id = :account AND remaining > 0").columns(
    id=Integer, amount=BigInteger, remaining=BigInteger, effective_at=UTCDateTime, expires_at=UTCDateTime,
    refundable=Boolean, priority=Integer)
_FIND_POSTING = text("SELECT key, op, payload_hash, customer_key, currency, result FROM postings "
                     "WHERE key = :key")


def lock_account(conn: Connection, customer: str, currency: str, now: datetime, *,
                 create: bool = True, key: str | None = None) -> AccountState | None:
    """Lock one account for this transaction and load its open lots.

    With `key` (a posting about to be made), PostgreSQL also fetches that posting and reserves
    ids in the same round trip as the lots.

    PostgreSQL: `SELECT ... FOR UPDATE` on the account row serializes writers per customer.
    SQLite: the transaction already began with `BEGIN IMMEDIATE`, which serializes all writers.
    """
    query = _LOCK_ACCOUNT if is_postgres(conn) else _SELECT_ACCOUNT
    params = {"customer": customer, "currency": currency}
    row = conn.execute(query, params).first()
    if row is None:
        if not create:
            return None
        ensure_account(conn, customer, currency, now)
        row = conn.execute(query, params).first()
    assert row is not None
    state = AccountState(id=row.id, customer_key=row.customer_key, currency=row.currency, balance=row.balance,
                         debt=row.debt, credit_limit=row.credit_limit)
    if is_postgres(conn) and key is not None:
        lot_rows = _pg_pipelined_reads(conn, row.id, key)
    else:
        lot_rows = conn.execute(_OPEN_LOTS, {"account": row.id}).all()
    state.lots = [lot_state(r) for r in lot_rows]
    return state


def lot_state(r: Any) -> LotState:
    """A lot row (id, amount, remaining, effective_at, expires_at, refundable, priority) as rule state."""
    return LotState(id=r.id, amount=r.amount, remaining=r.remaining, effective_at=r.effective_at,
                    expires_at=r.expires_at, refundable=bool(r.refundable), priority=r.priority)


_PG_LOTS = ("SELECT id, amount, remaining, effective_at, expires_at, refundable, priority FROM lots "
            "WHERE account_id = %s AND remaining > 0")
_PG_POSTING = "SELECT key, op, payload_hash, customer_key, currency, result FROM postings WHERE key = %s"
_PG_IDS = "SELECT nextval('entries_id_seq'), nextval('entries_id_seq'), nextval('lots_id_seq')"


def _pg_pipelined_reads(conn: Connection, account_id: int, key: str) -> list[Any]:
    """Open lots, the posting under `key` and a few ids in one round trip (psycopg pipeline).

    Runs after the account row is locked, so the lots read is current. The posting row and the
    reserved ids are left in `conn.info` for `find_posting` and `IdReserver` of this transaction.
    """
    from psycopg.rows import namedtuple_row

    raw = conn.connection.dbapi_connection
    with raw.pipeline():  # type: ignore[union-attr]
        lots_cur = raw.cursor(row_factory=namedtuple_row)  # type: ignore[union-attr]
        lots_cur.execute(_PG_LOTS, (account_id,))
        post_cur = raw.cursor(row_factory=namedtuple_row)  # type: ignore[union-attr]
        post_cur.execute(_PG_POSTING, (key,))
        ids_cur = raw.cursor()  # type: ignore[union-attr]
        ids_cur.execute(_PG_IDS)
    lot_rows = lots_cur.fetchall()
    conn.info["prefetched_posting"] = (key, post_cur.fetchone())
    e1, e2, lot = ids_cur.fetchone()
    conn.info["reserved_ids"] = {"entries": [e2, e1], "lots": [lot]}
    return lot_rows


def lock_account_by_id(conn: Connection, account_id: int, now: datetime) -> AccountState:
    """Lock an account found by id (reversals start from an entry)."""
    row = conn.execute(select(accounts.c.customer_key, accounts.c.currency).where(accounts.c.id == account_id)).one()
    state = lock_account(conn, row.customer_key, row.currency, now, create=False)
    assert state is not None
    return state


def load_entry(conn: Connection, entry_id: int) -> Any:
    """The entry row with this id, or None."""
    return conn.execute(select(entries).where(entries.c.id == entry_id)).first()


def entry_state(conn: Connection, row: Any, state: AccountState) -> EntryState:
    """An entry row of the locked account `state` with its allocations, lots and reversal, for reversing it."""
    done = conn.execute(select(entries.c.id).where(entries.c.reverses_id == row.id)).first()
    allocs = conn.execute(select(allocations.c.lot_id, allocations.c.amount)
                          .where(allocations.c.entry_id == row.id)).all()
    lot_ids = {a.lot_id for a in allocs if a.lot_id is not None}
    moved = {lot.id: lot for lot in state.lots if lot.id in lot_ids}
    missing = lot_ids - set(moved)
    if missing:
        for lot in load_lots(conn, lots.c.id.in_(missing)):
            moved[lot.id] = lot
    return EntryState(id=row.id, kind=row.kind, amount=row.amount, source_system=row.source_system,
                      source_id=row.source_id, reversed_by=done.id if done is not None else None,
                      allocations=[(a.lot_id, a.amount) for a in allocs], lots=moved)


def load_lots(conn: Connection, where: Any) -> list[LotState]:
    """Lots matching `where`, as rule states."""
    return [lot for lots_of in load_lots_by_account(conn, where).values() for lot in lots_of]


def load_lots_by_account(conn: Connection, where: Any) -> dict[int, list[LotState]]:
    """Lots matching `where`, as rule states grouped by account id (each list in lot-id order)."""
    rows = conn.execute(select(lots.c.account_id, lots.c.id, lots.c.amount, lots.c.remaining, lots.c.effective_at,
                               lots.c.expires_at, lots.c.refundable, lots.c.priority).where(where)
                        .order_by(lots.c.id))
    out: dict[int, list[LotState]] = {}
    for r in rows:
        out.setdefault(r.account_id, []).append(lot_state(r))
    return out


def find_posting(conn: Connection, key: str) -> Any:
    """The posting row stored under an idempotency key, if any."""
    prefetched = conn.info.pop("prefetched_posting", None)
    if prefetched is not None and prefetched[0] == key:
        return prefetched[1]
    return conn.execute(_FIND_POSTING, {"key": key}).first()


def one_of(conn: Connection, column: Any, values: list[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter however many values."""
    if is_postgres(conn):
        kind = ARRAY(BigInteger) if values and isinstance(values[0], int) else ARRAY(String)
        return column == any_(literal(values, kind))
    return column.in_(values)


def find_postings(conn: Connection, keys: Iterable[str]) -> dict[str, Any]:
    """Posting rows for many keys at once (bulk import, batches); rows as `find_posting` returns them."""
    found: dict[str, Any] = {}
    key_list = list(keys)
    prefetched = conn.info.pop("prefetched_posting", None)
    if prefetched is not None and key_list == [prefetched[0]]:  # `lock_account` already read it
        return {prefetched[0]: prefetched[1]} if prefetched[1] is not None else {}
    step = 20000 if is_postgres(conn) else 5000
    for start in range(0, len(key_list), step):
        chunk = key_list[start:start + step]
        for row in conn.execute(select(postings.c.key, postings.c.op, postings.c.payload_hash,
                                       postings.c.customer_key, postings.c.currency, postings.c.result)
                                .where(one_of(conn, postings.c.key, chunk))):
            found[row.key] = row
    return found


def lock_accounts(conn: Connection, pairs: Iterable[tuple[str, str]], now: datetime, *,
                  states: dict[tuple[str, str], AccountState] | None = None,
                  policies: dict[tuple[str, str], tuple[str, Decimal]] | None = None,
                  step: int = 5000) -> dict[tuple[str, str], AccountState]:
    """Create missing accounts, lock them and load their open lots (and refund policies), in bulk.

    Accounts already in `states` are left alone. Rows are created and locked in one order (pairs
    sorted; rows by id), so concurrent batches cannot deadlock. PostgreSQL: `SELECT ... FOR UPDATE`;
    SQLite: the transaction already holds the write lock (`BEGIN IMMEDIATE`). When `policies` is
    given, the customer-level refund policy of each pair that has terms is stored in it.
    """
    states = {} if states is None else states
    missing = sorted(set(pairs) - set(states))
    acc = accounts
    for start in range(0, len(missing), step):
        part = missing[start:start + step]
        wanted = set(part)
        customers = sorted({c for c, _ in part})
        have = {(r.customer_key, r.currency) for r in conn.execute(
            select(acc.c.customer_key, acc.c.currency).where(one_of(conn, acc.c.customer_key, customers)))}
        ensure_accounts(conn, [pair for pair in part if pair not in have], now)
        query = select(acc).where(one_of(conn, acc.c.customer_key, customers)).order_by(acc.c.id)
        if is_postgres(conn):
            query = query.with_for_update()
        by_id: dict[int, AccountState] = {}
        for row in conn.execute(query):
            if (row.customer_key, row.currency) not in wanted:
                continue
            state = AccountState(row.id, row.customer_key, row.currency, row.balance, row.debt, row.credit_limit)
            by_id[row.id] = state
            states[(row.customer_key, row.currency)] = state
        open_lots = load_lots_by_account(conn, and_(one_of(conn, lots.c.account_id, list(by_id)), lots.c.remaining > 0))
        for account_id, account_lots in open_lots.items():
            by_id[account_id].lots.extend(account_lots)
        if policies is not None:
            load_refund_policies(conn, wanted, policies)
    return states


def load_refund_policies(conn: Connection, pairs: set[tuple[str, str]],
                         policies: dict[tuple[str, str], tuple[str, Decimal]]) -> None:
    """Store in `policies` the customer-level refund policy and fee of each (customer, currency) that has terms."""
    customers = sorted({c for c, _ in pairs})
    for row in conn.execute(select(terms.c.customer_key, terms.c.currency, terms.c.refund_policy,
                                   terms.c.refund_fee_pct).where(
            one_of(conn, terms.c.customer_key, customers), terms.c.contract_ref == "")):
        if (row.customer_key, row.currency) in pairs:
            policies[(row.customer_key, row.currency)] = (row.refund_policy, Decimal(row.refund_fee_pct))


_TIME_TEXT: dict[datetime, str] = {}


def _sqlite_time(value: datetime) -> str:
    # The exact text SQLAlchemy's SQLite DateTime type stores (naive UTC), so reads and
    # string comparisons in SQL agree with rows written through the ORM types. Most rows of
    # a batch share a few times (the batch's `now`), hence the small cache.
    text = _TIME_TEXT.get(value)
    if text is None:
        if len(_TIME_TEXT) > 4096:
            _TIME_TEXT.clear()
        text = _TIME_TEXT[value] = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text


_TIME_COLUMNS = frozenset({"effective_at", "expires_at", "recorded_at", "created_at", "updated_at"})


def bulk_insert(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """`executemany` straight on the driver: the hot path of postings and imports.

    Column values are already plain (ints, strings, booleans, aware datetimes); on SQLite
    datetimes are rendered the way SQLAlchemy stores them.
    """
    columns = list(rows[0])
    if is_postgres(conn):
        marks = ", ".join(["%s"] * len(columns))
        params = [tuple(row.values()) for row in rows]
    else:
        marks = ", ".join(["?"] * len(columns))
        times = [i for i, c in enumerate(columns) if c in _TIME_COLUMNS]
        params = []
        for row in rows:
            values = list(row.values())
            for i in times:
                if values[i] is not None:
                    values[i] = _sqlite_time(values[i])
            params.append(tuple(values))
    conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", params)


def bulk_update(conn: Connection, sql_sqlite: str, params: list[tuple[Any, ...]]) -> None:
    """`executemany` of an UPDATE written with `?` marks (rewritten to `%s` for PostgreSQL).

    Datetime parameters are rendered for SQLite the way `bulk_insert` renders them.
    """
    if not params:
        return
    if is_postgres(conn):
        conn.exec_driver_sql(sql_sqlite.replace("?", "%s"), params)
        return
    conn.exec_driver_sql(sql_sqlite, [tuple(_sqlite_time(v) if isinstance(v, datetime) else v for v in row)
                                      for row in params])


class IdReserver:
    """Hands out primary keys for entries and lots inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pools: dict[str, list[int]] = conn.info.pop("reserved_ids", None) or {"entries": [], "lots": []}
        self.next_sqlite: dict[str, int] = {}

    def take(self, table: str, hint: int = 1) -> int:
        """One new id for `table`; reserves `hint` at a time on PostgreSQL."""
        if is_postgres(self.conn):
            pool = self.pools[table]
            if not pool:
                rows = self.conn.exec_driver_sql(
                    f"SELECT nextval('{table}_id_seq') FROM generate_series(1, {max(1, hint)})").all()
                pool.extend(sorted((r[0] for r in rows), reverse=True))
            return pool.pop()
        # SQLite: the transaction holds the write lock (BEGIN IMMEDIATE), so MAX(id) is ours to extend.
        if table not in self.next_sqlite:
            self.next_sqlite[table] = (self.conn.exec_driver_sql(f"SELECT MAX(id) FROM {table}").scalar() or 0) + 1
        value = self.next_sqlite[table]
        self.next_sqlite[table] = value + 1
        return value


def entry_doc(entry_id: int, kind: str, amount: int, balance_after: int, effective_at: datetime,
              allocs: list[tuple[int | None, int]], new_lot: int | None, cur: str) -> dict[str, Any]:
    """One entry as posting results show it."""
    doc: dict[str, Any] = {"id": entry_id, "kind": kind, "amount": fmt(amount, cur),
                           "balance_after": fmt(balance_after, cur), "effective_at": effective_at.isoformat(),
                           "allocations": [{"lot_id": lot, "amount": fmt(a, cur)} for lot, a in allocs]}
    if new_lot is not None:
        doc["lot_id"] = new_lot
    return doc


def result_doc(op: str, key: str, customer: str, cur: str, balance: int, entry_docs: list[dict[str, Any]],
               extra: dict[str, Any]) -> dict[str, Any]:
    """The posting result document."""
    return {"op": op, "key": key, "customer": customer, "currency": cur, "balance": fmt(balance, cur),
            "entries": entry_docs, **extra}


def rebuild_result(conn: Connection, posting: Any) -> dict[str, Any]:
    """Derive a stored posting's result from its immutable entries and allocations (for replays)."""
    rows = conn.execute(select(entries).where(entries.c.posting_key == posting.key).order_by(entries.c.id)).all()
    ids = [r.id for r in rows]
    allocs: dict[int, list[tuple[int | None, int]]] = {i: [] for i in ids}
    for a in conn.execute(select(allocations.c.entry_id, allocations.c.lot_id, allocations.c.amount)
                          .where(allocations.c.entry_id.in_(ids)).order_by(allocations.c.id)):
        allocs[a.entry_id].append((a.lot_id, a.amount))
    new_lots = {r.entry_id: r.id for r in conn.execute(select(lots.c.entry_id, lots.c.id)
                                                       .where(lots.c.entry_id.in_(ids)))}
    cur = posting.currency
    docs = [entry_doc(r.id, r.kind, r.amount, r.balance_after, r.effective_at, allocs[r.id], new_lots.get(r.id), cur)
            for r in rows]
    balance = rows[-1].balance_after if rows else 0
    total = sum(r.amount for r in rows)
    extra = {"amount": fmt(-total if posting.op in _OUTGOING else total, cur), **json.loads(posting.result)}
    return result_doc(posting.op, posting.key, posting.customer_key, cur, balance, docs, extra)


# Operations whose result states the amount as a positive outflow; the others state the signed inflow.
_OUTGOING = frozenset({"consume", "refund", "expire"})


def _stored_extra(extra: dict[str, Any]) -> str:
    """What a posting keeps of its result beyond the entries: everything but the derivable amount."""
    rest = {k: v for k, v in extra.items() if k != "amount"}
    return json.dumps(rest, separators=(",", ":")) if rest else "{}"


class PlanWriter:
    """Applies plans to in-memory account state and buffers the rows they write."""

    def __init__(self, conn: Connection, now: datetime, *, batch_hint: int = 1) -> None:
        self.conn = conn
        self.now = now
        self.ids = IdReserver(conn)
        self.batch_hint = batch_hint
        self.rows: dict[str, list[dict[str, Any]]] = {"postings": [], "entries": [], "lots": [], "allocations": []}
        self.lot_updates: dict[int, int] = {}
        self.account_updates: dict[int, AccountState] = {}

    def apply(self, plan: Plan, *, want_result: bool = True) -> dict[str, Any] | None:
        """Record a plan's rows and update the account state in memory.

        Returns the posting result (the same document `rebuild_result` derives from the stored
        rows for a replay), unless `want_result` is False (bulk import skips building it).
        """
        state = plan.account
        cur = state.currency
        out_entries: list[dict[str, Any]] = []
        for pe in plan.entries:
            entry_id = self.ids.take("entries", self.batch_hint)
            state.balance += pe.amount
            self.rows["entries"].append({
                "id": entry_id, "account_id": state.id, "kind": pe.kind, "amount": pe.amount,
                "balance_after": state.balance, "effective_at": pe.effective_at, "recorded_at": self.now,
                "posting_key": plan.key, "source_system": pe.source_system, "source_id": pe.source_id,
                "memo": pe.memo, "reverses_id": pe.reverses_id})
            if pe.new_lot is not None:
                self._add_lot(state, pe.new_lot, entry_id)
            allocs = []
            for ref, amount in pe.allocations:
                lot_id = self._apply_allocation(state, ref, amount)
                self.rows["allocations"].append({"entry_id": entry_id, "lot_id": lot_id, "amount": amount})
                allocs.append((lot_id, amount))
            if want_result:
                new_lot = pe.new_lot.state.id if pe.new_lot is not None and pe.new_lot.state is not None else None
                out_entries.append(entry_doc(entry_id, pe.kind, pe.amount, state.balance, pe.effective_at,
                                             allocs, new_lot, cur))
        state.lots = [lot for lot in state.lots if lot.remaining > 0]
        self.account_updates[state.id] = state
        self.rows["postings"].append({"key": plan.key, "op": plan.op, "payload_hash": plan.payload_hash,
                                      "customer_key": state.customer_key, "currency": cur,
                                      "result": _stored_extra(plan.extra),
                                      "recorded_at": self.now})
        if not want_result:
            return None
        return result_doc(plan.op, plan.key, state.customer_key, cur, state.balance, out_entries, plan.extra)

    def _add_lot(self, state: AccountState, lot: NewLot, entry_id: int) -> None:
        lot_id = self.ids.take("lots", self.batch_hint)
        lot.state = LotState(id=lot_id, amount=lot.amount, remaining=0, effective_at=lot.effective_at,
                             expires_at=lot.expires_at, refundable=lot.refundable, priority=lot.priority)
        state.lots.append(lot.state)
        self.rows["lots"].append({
            "id": lot_id, "account_id": state.id, "entry_id": entry_id, "amount": lot.amount, "remaining": None,
            "effective_at": lot.effective_at, "expires_at": lot.expires_at, "refundable": lot.refundable,
            "priority": lot.priority, "source_system": lot.source_system, "source_id": lot.source_id,
            "_state": lot.state})

    def _apply_allocation(self, state: AccountState, ref: LotState | NewLot | None, amount: int) -> int | None:
        if ref is None:
            state.debt -= amount
            return None
        lot = ref.state if isinstance(ref, NewLot) else ref
        assert lot is not None
        lot.remaining += amount
        if lot not in state.lots and lot.remaining > 0:
            state.lots.append(lot)
        self.lot_updates[lot.id] = lot.remaining
        return lot.id

    def flush(self) -> None:
        """Write everything buffered (in foreign-key order); one round trip on PostgreSQL."""
        if is_postgres(self.conn):
            with self.conn.connection.dbapi_connection.pipeline():  # type: ignore[union-attr]
                self._flush()
        else:
            self._flush()

    def _flush(self) -> None:
        conn = self.conn
        new_lot_ids = set()
        if self.rows["lots"]:
            for row in self.rows["lots"]:
                state = row.pop("_state")
                row["remaining"] = state.remaining
                new_lot_ids.add(row["id"])
        for name in ("postings", "entries", "lots", "allocations"):
            if self.rows[name]:
                bulk_insert(conn, name, self.rows[name])
                self.rows[name] = []
        bulk_update(conn, "UPDATE lots SET remaining = ? WHERE id = ?",
                    [(rem, lid) for lid, rem in self.lot_updates.items() if lid not in new_lot_ids])
        self.lot_updates = {}
        if self.account_updates:
            bulk_update(conn, "UPDATE accounts SET balance = ?, debt = ?, updated_at = ? WHERE id = ?",
                        [(st.balance, st.debt, self.now, st.id) for st in self.account_updates.values()])
            self.account_updates = {}
