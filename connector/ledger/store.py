"""Ledger tables and the reads postings start from: account locks, open lots, stored postings, terms.

Writing the rows a plan makes is `writer.py`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    any_,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector.ledger.rules import AccountState, EntryState, LotState
from connector.ledger.tables import Account, Allocation, Entry, Lot, Posting, Terms, UTCDateTime

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
    """Create many missing accounts in one statement (bulk import).

    The pairs this transaction really created are kept in `conn.info["created_accounts"]` (a group
    commit drops those only its refused requests asked for, as `Ledger.post` would have)."""
    if not pairs:
        return
    ins = pg_insert(accounts) if is_postgres(conn) else sqlite_insert(accounts)
    rows = conn.execute(
        ins.on_conflict_do_nothing(index_elements=["customer_key", "currency"]).returning(
            accounts.c.customer_key, accounts.c.currency),
        [{"customer_key": c, "currency": cur, "balance": 0, "debt": 0, "credit_limit": 0,
          "created_at": now, "updated_at": now} for c, cur in pairs])
    conn.info.setdefault("created_accounts", set()).update((r[0], r[1]) for r in rows)


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
_POSTING_COLUMNS = "key, op, payload_hash, customer_key, currency, result, first_entry_id, last_entry_id"
_FIND_POSTING = text(f"SELECT {_POSTING_COLUMNS} FROM postings WHERE key = :key")


def lock_account(conn: Connection, customer: str, currency: str, now: datetime, *,
                 create: bool = True, key: str | None = None) -> AccountState | None:
    """Lock one account for this transaction and load its open lots.

    With `key` (a posting about to be made), PostgreSQL also fetches that posting and reserves
    ids in the same round trip as the lots.

    PostgreSQL: `SELECT ... FOR UPDATE` on the account row serializes writers per customer.
    SQLite: the transaction already began with `BEGIN IMMEDIATE`, which serializes all writers.
    """
    if is_postgres(conn) and key is not None:
        found = _pg_lock_and_read(conn, customer, currency, key)
        if found is not None:  # the usual case, an existing account: all reads in one round trip
            return found
        # A new account: keep the reserved ids, but look the posting up again once the new row is
        # locked (a concurrent first posting under the same key may commit in between).
        conn.info.pop("prefetched_posting", None)
        key = None
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
        lot_rows: Sequence[Any] = _pg_pipelined_reads(conn, row.id, key)
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
_PG_POSTING = f"SELECT {_POSTING_COLUMNS} FROM postings WHERE key = %s"
_PG_IDS = "SELECT nextval('entries_id_seq'), nextval('entries_id_seq'), nextval('lots_id_seq')"


def _pg_pipelined_reads(conn: Connection, account_id: int, key: str) -> list[Any]:
    """Open lots, the posting under `key` and a few ids in one round trip (psycopg pipeline).

    Runs after the account row is locked, so the lots read is current. The posting row and the
    reserved ids are left in `conn.info` for `find_posting` and `IdReserver` of this transaction.
    """
    import psycopg
    from psycopg.rows import namedtuple_row

    # psycopg (PostgreSQL's driver here), or the dry run's savepoint wrapper that forwards to one
    raw = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    with raw.pipeline():
        lots_cur = raw.cursor(row_factory=namedtuple_row)
        lots_cur.execute(_PG_LOTS, (account_id,))
        post_cur = raw.cursor(row_factory=namedtuple_row)
        post_cur.execute(_PG_POSTING, (key,))
        ids_cur = raw.cursor()
        ids_cur.execute(_PG_IDS)
    lot_rows = lots_cur.fetchall()
    conn.info["prefetched_posting"] = (key, post_cur.fetchone())
    ids = ids_cur.fetchone()
    assert ids is not None  # nextval always answers one row
    e1, e2, lot = ids
    conn.info["reserved_ids"] = {"entries": [e2, e1], "lots": [lot]}
    return lot_rows


_PG_LOCK = ("SELECT id, customer_key, currency, balance, debt, credit_limit FROM accounts "
            "WHERE customer_key = %s AND currency = %s FOR UPDATE")
_PG_LOTS_OF = ("SELECT id, amount, remaining, effective_at, expires_at, refundable, priority FROM lots "
               "WHERE account_id = (SELECT id FROM accounts WHERE customer_key = %s AND currency = %s) "
               "AND remaining > 0")


def _pg_lock_and_read(conn: Connection, customer: str, currency: str, key: str) -> AccountState | None:
    """Lock an existing account and read what `_pg_pipelined_reads` reads, in ONE round trip.

    The statements run in order in the transaction the pipeline begins, so the lots are read after
    the row lock is held (each statement of a READ COMMITTED transaction sees what committed before
    it). None when the account does not exist yet (the caller creates it and locks it the long way).
    """
    import psycopg
    from psycopg.rows import namedtuple_row

    raw = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    with raw.pipeline():
        acc_cur = raw.cursor(row_factory=namedtuple_row)
        acc_cur.execute(_PG_LOCK, (customer, currency))
        lots_cur = raw.cursor(row_factory=namedtuple_row)
        lots_cur.execute(_PG_LOTS_OF, (customer, currency))
        post_cur = raw.cursor(row_factory=namedtuple_row)
        post_cur.execute(_PG_POSTING, (key,))
        ids_cur = raw.cursor()
        ids_cur.execute(_PG_IDS)
    row: Any = acc_cur.fetchone()
    conn.info["prefetched_posting"] = (key, post_cur.fetchone())
    ids = ids_cur.fetchone()
    assert ids is not None  # nextval always answers one row
    conn.info["reserved_ids"] = {"entries": [ids[1], ids[0]], "lots": [ids[2]]}
    if row is None:
        return None
    state = AccountState(id=row.id, customer_key=row.customer_key, currency=row.currency, balance=row.balance,
                         debt=row.debt, credit_limit=row.credit_limit)
    state.lots = [lot_state(r) for r in lots_cur.fetchall()]
    return state


def lock_account_by_id(conn: Connection, account_id: int, now: datetime) -> AccountState:
    """Lock an account found by id (reversals start from an entry)."""
    row = conn.execute(
        select(accounts.c.customer_key, accounts.c.currency).where(accounts.c.id == account_id)).one()
    state = lock_account(conn, row.customer_key, row.currency, now, create=False)
    assert state is not None
    return state


def load_entry(conn: Connection, entry_id: int) -> Any:
    """The entry row with this id, or None."""
    return conn.execute(select(entries).where(entries.c.id == entry_id)).first()


def entry_state(conn: Connection, row: Any, state: AccountState) -> EntryState:
    """An entry row of the locked account `state` with its allocations, lots and reversal (to reverse it)."""
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


def _lot_select() -> Any:
    return select(lots.c.account_id, lots.c.id, lots.c.amount, lots.c.remaining, lots.c.effective_at,
                  lots.c.expires_at, lots.c.refundable, lots.c.priority)


# Built once: SQLAlchemy keeps a statement's cache key, so reusing it skips rebuilding the query per read.
_OPEN_LOTS = _lot_select().where(lots.c.account_id == bindparam("account"), lots.c.remaining > 0) \
    .order_by(lots.c.id)


def load_open_lots(conn: Connection, account_id: int) -> list[LotState]:
    """The account's lots with money left, as rule states in lot-id order (a balance read's query)."""
    return [lot_state(r) for r in conn.execute(_OPEN_LOTS, {"account": account_id})]


def load_lots_by_account(conn: Connection, where: Any) -> dict[int, list[LotState]]:
    """Lots matching `where`, as rule states grouped by account id (each list in lot-id order)."""
    rows = conn.execute(_lot_select().where(where).order_by(lots.c.id))
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
    """`column IN values` with one parameter however many values (ints or strings).

    PostgreSQL: `column = ANY(array)`; SQLite: `column IN (SELECT value FROM json_each(json array))`.
    A list of thousands of bound values would be compiled and bound one by one on every call.
    """
    if is_postgres(conn):
        kind = ARRAY(BigInteger) if values and isinstance(values[0], int) else ARRAY(String)
        return column == any_(literal(values, kind))
    each = func.json_each(literal(json.dumps(values), String)).table_valued("value")
    return column.in_(select(each.c.value))


def find_postings(conn: Connection, keys: Iterable[str]) -> dict[str, Any]:
    """Posting rows for many keys at once (bulk import, batches); rows as `find_posting` returns them."""
    found: dict[str, Any] = {}
    key_list = list(keys)
    prefetched = conn.info.pop("prefetched_posting", None)
    if prefetched is not None and key_list == [prefetched[0]]:  # `lock_account` already read it
        return {prefetched[0]: prefetched[1]} if prefetched[1] is not None else {}
    if len(key_list) == 1:  # every single posting on SQLite: the prepared statement, no expression to build
        row = conn.execute(_FIND_POSTING, {"key": key_list[0]}).first()
        return {row.key: row} if row is not None else {}
    step = 20000 if is_postgres(conn) else 5000
    for start in range(0, len(key_list), step):
        chunk = key_list[start:start + step]
        for row in conn.execute(select(postings.c.key, postings.c.op, postings.c.payload_hash,
                                       postings.c.customer_key, postings.c.currency, postings.c.result,
                                       postings.c.first_entry_id, postings.c.last_entry_id)
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
            state = AccountState(row.id, row.customer_key, row.currency, row.balance, row.debt,
                                 row.credit_limit)
            by_id[row.id] = state
            states[(row.customer_key, row.currency)] = state
        open_lots = load_lots_by_account(
            conn, and_(one_of(conn, lots.c.account_id, list(by_id)), lots.c.remaining > 0))
        for account_id, account_lots in open_lots.items():
            by_id[account_id].lots.extend(account_lots)
        if policies is not None:
            load_refund_policies(conn, wanted, policies)
    return states


def load_refund_policies(conn: Connection, pairs: set[tuple[str, str]],
                         policies: dict[tuple[str, str], tuple[str, Decimal]]) -> None:
    """Put in `policies` the customer-level refund policy and fee of each (customer, currency) with terms."""
    customers = sorted({c for c, _ in pairs})
    for row in conn.execute(select(terms.c.customer_key, terms.c.currency, terms.c.refund_policy,
                                   terms.c.refund_fee_pct).where(
            one_of(conn, terms.c.customer_key, customers), terms.c.contract_ref == "")):
        if (row.customer_key, row.currency) in pairs:
            policies[(row.customer_key, row.currency)] = (row.refund_policy, Decimal(row.refund_fee_pct))
