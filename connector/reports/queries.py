"""Set-based reads of the ledger as of a business time, shared by reports, statements and compliance.

Every figure is derived from immutable entries and allocations with `effective_at <= as_of`,
so a report for a past date shows what the books said then. When `as_of` is at or after the
latest entry, open lots come straight from `lots.remaining` (the same numbers, much cheaper).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal_column, select
from sqlalchemy.orm import aliased

from connector.ledger import store
from connector.ledger.rules import LotState
from connector.ledger.store import terms as terms_table

E, A, L, AL = store.entries, store.accounts, store.lots, store.allocations


@dataclass(slots=True)
class AccountAgg:
    """One account's aggregates from its entries."""

    account_id: int
    customer: str
    currency: str
    credit_limit: int
    balance: int
    balance_before: int
    consumed: int
    first_at: datetime


@dataclass(slots=True)
class OpenLot:
    """A lot with money left at `as_of` (`kind`: the kind of the entry that created it)."""

    account_id: int
    state: LotState
    kind: str


@dataclass(slots=True)
class TermsRow:
    """The report's view of one terms row."""

    customer: str
    currency: str
    contract_ref: str
    agreed_amount: int | None
    due_date: date | None
    refund_policy: str
    refund_fee_pct: str


def account_aggregates(conn: Connection, as_of: datetime, trend_at: datetime,
                       window_start: datetime) -> Iterator[AccountAgg]:
    """Balance at `as_of` and at `trend_at`, consumption in (window_start, as_of], first entry time."""
    in_window = and_(E.c.kind == "consume", E.c.effective_at > window_start)
    agg = (select(E.c.account_id,
                  func.sum(E.c.amount).label("balance"),
                  func.sum(case((E.c.effective_at <= trend_at, E.c.amount), else_=0)).label("before"),
                  func.sum(case((in_window, -E.c.amount), else_=0)).label("consumed"),
                  func.min(E.c.effective_at).label("first_at"))
           .where(E.c.effective_at <= as_of).group_by(E.c.account_id).subquery())
    query = (select(A.c.id, A.c.customer_key, A.c.currency, A.c.credit_limit, agg.c.balance, agg.c.before,
                    agg.c.consumed, agg.c.first_at)
             .join(agg, agg.c.account_id == A.c.id).order_by(A.c.id))
    for r in conn.execute(query):
        yield AccountAgg(r.id, r.customer_key, r.currency, int(r.credit_limit), int(r.balance), int(r.before),
                         int(r.consumed), aware(r.first_at))


def debts(conn: Connection, as_of: datetime) -> dict[int, int]:
    """Credit-line use per account at `as_of` (allocations to no lot)."""
    query = (select(E.c.account_id, func.sum(AL.c.amount)).join(E, E.c.id == AL.c.entry_id)
             .where(AL.c.lot_id.is_(None), E.c.effective_at <= as_of).group_by(E.c.account_id))
    return {acc: -int(total) for acc, total in conn.execute(query) if int(total) != 0}


def consumption_reversals(conn: Connection, as_of: datetime) -> list[tuple[int, str, datetime, int]]:
    """Reversals of consumption up to `as_of`: (account id, currency, effective time, amount given back)."""
    orig = aliased(E)
    query = (select(E.c.account_id, A.c.currency, E.c.effective_at, E.c.amount)
             .join(orig, orig.c.id == E.c.reverses_id).join(A, A.c.id == E.c.account_id)
             .where(E.c.kind == "reverse", orig.c.kind == "consume", E.c.effective_at <= as_of))
    return [(r[0], r[1], aware(r[2]), int(r[3])) for r in conn.execute(query)]


def month_of(conn: Connection, column: Any) -> Any:
    """SQL for the UTC calendar month `YYYY-MM` of a time column."""
    if store.is_postgres(conn):
        return func.to_char(func.timezone("UTC", column), literal_column("'YYYY-MM'"))
    return func.substr(column, 1, 7)


def monthly_consumption(conn: Connection, start: datetime, as_of: datetime) -> list[tuple[str, str, int]]:
    """(currency, month, consumed) for consumption with start <= effective time <= as_of."""
    month = month_of(conn, E.c.effective_at)
    query = (select(A.c.currency, month.label("month"), func.sum(-E.c.amount))
             .join(A, A.c.id == E.c.account_id)
             .where(E.c.kind == "consume", E.c.effective_at >= start, E.c.effective_at <= as_of)
             .group_by(A.c.currency, month))
    return [(cur, str(m), int(total)) for cur, m, total in conn.execute(query)]


def latest_effective(conn: Connection) -> datetime | None:
    """The latest business time of any entry."""
    value = conn.execute(select(func.max(E.c.effective_at))).scalar()
    return aware(value) if value is not None else None


_UNSET = datetime.min.replace(tzinfo=UTC)


def open_lots(conn: Connection, as_of: datetime, account_ids: list[int] | None = None, *,
              latest: datetime | None = _UNSET) -> Iterator[OpenLot]:
    """Lots effective at `as_of` with money left then (expired-but-unswept lots included).

    `latest` (the latest entry time, if the caller already knows it) picks the cheap path.
    """
    maker = aliased(E)
    if latest is _UNSET:
        latest = latest_effective(conn)
    cols = (L.c.account_id, L.c.id, L.c.amount, L.c.effective_at, L.c.expires_at, L.c.refundable,
            L.c.priority, maker.c.kind)
    if latest is None or as_of >= latest:
        query = select(*cols, L.c.remaining.label("left")).join(maker, maker.c.id == L.c.entry_id) \
            .where(L.c.remaining > 0)
    else:
        moved = aliased(E)
        left = func.sum(AL.c.amount).label("left")
        query = (select(*cols, left).join(maker, maker.c.id == L.c.entry_id)
                 # a lot's allocations through its account's entries (no index on allocations.lot_id)
                 .join(moved, moved.c.account_id == L.c.account_id)
                 .join(AL, and_(AL.c.entry_id == moved.c.id, AL.c.lot_id == L.c.id))
                 .where(L.c.effective_at <= as_of, moved.c.effective_at <= as_of)
                 .group_by(*cols).having(func.sum(AL.c.amount) > 0))
    if account_ids is not None:
        query = query.where(L.c.account_id.in_(account_ids))
    for r in conn.execute(query):
        yield OpenLot(r.account_id, LotState(id=r.id, amount=int(r.amount), remaining=int(r.left),
                                             effective_at=aware(r.effective_at),
                                             expires_at=aware(r.expires_at) if r.expires_at else None,
                                             refundable=bool(r.refundable), priority=int(r.priority)), r.kind)


def lot_totals(conn: Connection, as_of: datetime) -> dict[int, tuple[int, int]]:
    """Per account: (paid, granted) lot amounts effective at `as_of`; granted = non-refundable adjustments."""
    maker = aliased(E)
    granted = and_(maker.c.kind == "adjust", L.c.refundable.is_(False))
    query = (select(L.c.account_id, func.sum(case(
        (granted, 0), else_=L.c.amount)), func.sum(case((granted, L.c.amount), else_=0))).join(
            maker, maker.c.id == L.c.entry_id).where(L.c.effective_at <= as_of).group_by(L.c.account_id))
    return {acc: (int(p), int(g)) for acc, p, g in conn.execute(query)}


def forfeited_paid(conn: Connection, as_of: datetime) -> dict[int, int]:
    """Per account: paid (not granted) money taken by expiry sweeps up to `as_of`."""
    maker = aliased(E)
    granted = and_(maker.c.kind == "adjust", L.c.refundable.is_(False))
    query = (select(E.c.account_id, func.sum(-AL.c.amount)).join(AL, AL.c.entry_id == E.c.id)
             .join(L, L.c.id == AL.c.lot_id).join(maker, maker.c.id == L.c.entry_id)
             .where(E.c.kind == "expire", E.c.effective_at <= as_of, ~granted).group_by(E.c.account_id))
    return {acc: int(total) for acc, total in conn.execute(query)}


def all_terms(conn: Connection) -> list[TermsRow]:
    """Every terms row."""
    t = terms_table
    rows = conn.execute(
        select(t.c.customer_key, t.c.currency, t.c.contract_ref, t.c.agreed_amount, t.c.due_date,
               t.c.refund_policy, t.c.refund_fee_pct))
    return [TermsRow(*r) for r in rows]


def deposits_for_terms(conn: Connection,
                       as_of: datetime) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
    """Deposits (not reversed by `as_of`) on accounts whose terms have a due date, in time order."""
    t = terms_table
    due = select(t.c.customer_key, t.c.currency).where(t.c.due_date.is_not(None)).distinct().subquery()
    rev = aliased(E)
    reversed_ids = select(rev.c.reverses_id).where(rev.c.kind == "reverse", rev.c.reverses_id.is_not(None),
                                                   rev.c.effective_at <= as_of)
    query = (select(A.c.customer_key, A.c.currency, E.c.effective_at, E.c.amount)
             .join(A, A.c.id == E.c.account_id)
             .join(due, and_(due.c.customer_key == A.c.customer_key, due.c.currency == A.c.currency))
             .where(E.c.kind == "deposit", E.c.effective_at <= as_of, E.c.id.not_in(reversed_ids))
             .order_by(A.c.customer_key, A.c.currency, E.c.effective_at, E.c.id))
    out: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
    for r in conn.execute(query):
        out.setdefault((r.customer_key, r.currency), []).append((aware(r.effective_at), int(r.amount)))
    return out


def deposits_between(conn: Connection, start: datetime, end: datetime) -> Iterator[Any]:
    """Deposits with start <= effective time < end (customer, currency, id, amount, time, source, key)."""
    query = (select(A.c.customer_key, A.c.currency, E.c.id, E.c.amount, E.c.effective_at, E.c.source_system,
                    E.c.source_id, E.c.posting_key)
             .join(A, A.c.id == E.c.account_id)
             .where(E.c.kind == "deposit", E.c.effective_at >= start, E.c.effective_at < end)
             .order_by(E.c.effective_at, E.c.id))
    yield from conn.execute(query)


def reference(row: Any) -> str:
    """How an entry row is referred to: `source_system:source_id` (the system named once: a sync's source id
    already starts with it, `zoho:Prepaid_Payments:1`), else its idempotency key."""
    if not row.source_system:
        return str(row.posting_key)
    source = str(row.source_id or "")
    return source if source.startswith(f"{row.source_system}:") else f"{row.source_system}:{source}"


def positive_balances(conn: Connection, as_of: datetime) -> dict[str, tuple[int, int]]:
    """Per currency at `as_of`: (sum of positive balances, number of such accounts)."""
    per = (select(E.c.account_id, func.sum(E.c.amount).label("bal")).where(E.c.effective_at <= as_of)
           .group_by(E.c.account_id).subquery())
    query = (select(A.c.currency, func.sum(per.c.bal), func.count()).join(per, per.c.account_id == A.c.id)
             .where(per.c.bal > 0).group_by(A.c.currency))
    return {cur: (int(total), int(n)) for cur, total, n in conn.execute(query)}


def aware(value: datetime) -> datetime:
    """An aware UTC datetime (SQLite returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "AccountAgg", "OpenLot", "TermsRow", "account_aggregates", "all_terms", "consumption_reversals", "debts",
    "deposits_between", "deposits_for_terms", "forfeited_paid", "latest_effective", "lot_totals",
    "monthly_consumption", "open_lots", "positive_balances", "reference"
]
