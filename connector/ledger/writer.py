"""Writing postings: id reservation, the plan writer, bulk statements and the result documents.

Both the posting path and the bulk importer write through `PlanWriter`, which buffers rows and
flushes them with `executemany`; ids are reserved up front so allocations can point at entries
and lots before they are flushed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from connector.ledger.plan import NewLot, Plan
from connector.ledger.rules import AccountState, LotState
from connector.ledger.store import allocations, entries, is_postgres, lots
from connector.money import fmt


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
            self.next_sqlite[table] = (self.conn.exec_driver_sql(f"SELECT MAX(id) FROM {table}").scalar() or
                                       0) + 1
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
    mine = entries.c.posting_key == posting.key
    if posting.first_entry_id is not None:  # by primary key: entries has no index on posting_key
        mine = and_(entries.c.id.between(posting.first_entry_id, posting.last_entry_id), mine)
    rows = conn.execute(select(entries).where(mine).order_by(entries.c.id)).all()
    ids = [r.id for r in rows]
    allocs: dict[int, list[tuple[int | None, int]]] = {i: [] for i in ids}
    for a in conn.execute(select(allocations.c.entry_id, allocations.c.lot_id, allocations.c.amount)
                          .where(allocations.c.entry_id.in_(ids)).order_by(allocations.c.id)):
        allocs[a.entry_id].append((a.lot_id, a.amount))
    new_lots = {r.entry_id: r.id for r in conn.execute(select(lots.c.entry_id, lots.c.id)
                                                       .where(lots.c.entry_id.in_(ids)))}
    cur = posting.currency
    docs = [
        entry_doc(r.id, r.kind, r.amount, r.balance_after, r.effective_at, allocs[r.id], new_lots.get(r.id),
                  cur) for r in rows
    ]
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
        self.rows: dict[str,
                        list[dict[str,
                                  Any]]] = {"postings": [], "entries": [], "lots": [], "allocations": []}
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
        entry_ids: list[int] = []
        for pe in plan.entries:
            entry_id = self.ids.take("entries", self.batch_hint)
            entry_ids.append(entry_id)
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
                new_lot = (pe.new_lot.state.id if pe.new_lot is not None and pe.new_lot.state is not None
                           else None)
                out_entries.append(entry_doc(entry_id, pe.kind, pe.amount, state.balance, pe.effective_at,
                                             allocs, new_lot, cur))
        state.lots = [lot for lot in state.lots if lot.remaining > 0]
        self.account_updates[state.id] = state
        self.rows["postings"].append({"key": plan.key, "op": plan.op, "payload_hash": plan.payload_hash,
                                      "customer_key": state.customer_key, "currency": cur,
                                      "result": _stored_extra(plan.extra),
                                      "recorded_at": self.now,
                                      "first_entry_id": min(entry_ids, default=None),
                                      "last_entry_id": max(entry_ids, default=None)})
        if not want_result:
            return None
        return result_doc(plan.op, plan.key, state.customer_key, cur, state.balance, out_entries, plan.extra)

    def _add_lot(self, state: AccountState, lot: NewLot, entry_id: int) -> None:
        lot_id = self.ids.take("lots", self.batch_hint)
        lot.state = LotState(id=lot_id, amount=lot.amount, remaining=0, effective_at=lot.effective_at,
                             expires_at=lot.expires_at, refundable=lot.refundable, priority=lot.priority)
        state.lots.append(lot.state)
        self.rows["lots"].append({
            "id": lot_id, "account_id": state.id, "entry_id": entry_id, "amount": lot.amount,
            "remaining": None, "effective_at": lot.effective_at, "expires_at": lot.expires_at,
            "refundable": lot.refundable, "priority": lot.priority, "source_system": lot.source_system,
            "source_id": lot.source_id, "_state": lot.state
        })

    def _apply_allocation(self, state: AccountState, ref: LotState | NewLot | None,
                          amount: int) -> int | None:
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
