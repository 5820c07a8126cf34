"""Read-only views of the ledger: balances now or as of a time, statements, single entries, all accounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, func, select, text

from connector.errors import NotFound
from connector.ledger import store
from connector.ledger.planners import as_utc, check_entry_id
from connector.ledger.rules import AccountState, LotState
from connector.money import currency_code, fmt, from_minor
from connector.timeutil import utcnow

_ALL_BALANCES = text("SELECT customer_key, currency, balance, debt, credit_limit FROM accounts "
                     "ORDER BY customer_key, currency")


@dataclass(frozen=True)
class BalanceView:
    """An account's balance now or as of a time."""

    customer: str
    currency: str
    balance: Decimal
    available: Decimal | None = None
    debt: Decimal | None = None
    credit_limit: Decimal | None = None
    as_of: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form with decimal strings."""
        out: dict[str, Any] = {"customer": self.customer, "currency": self.currency,
                               "balance": str(self.balance)}
        for name in ("available", "debt", "credit_limit"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        return out


@dataclass
class Statement:
    """Entries of one account between two times, with opening and closing balances."""

    customer: str
    currency: str
    start: datetime | None
    end: datetime | None
    opening: Decimal
    closing: Decimal
    entries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"customer": self.customer, "currency": self.currency,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "opening": str(self.opening), "closing": str(self.closing), "entries": self.entries}


class LedgerQueries:
    """Balances, statements, entries and accounts of one database; writes nothing."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def balance(self, customer: str, currency: str | None = None, *, as_of: datetime | None = None,
                known_at: datetime | None = None) -> list[BalanceView]:
        """Balances of a customer (one per currency): now, or as of a business time as known at a time."""
        cur = currency_code(currency) if currency else None
        as_of, known_at = as_utc(as_of, "as_of"), as_utc(known_at, "known_at")
        acc = store.accounts
        with self.engine.connect() as conn:
            query = select(acc).where(acc.c.customer_key == customer)
            if cur:
                query = query.where(acc.c.currency == cur)
            rows = conn.execute(query.order_by(acc.c.currency)).all()
            if not rows:
                what = f"customer {customer}" + (f" in {cur}" if cur else "")
                raise NotFound(f"{what} has no ledger account", customer=customer)
            views = []
            now = self.clock()
            for row in rows:
                c = row.currency
                if as_of is None and known_at is None:
                    views.append(_current_view(row, store.load_lots(conn, and_(
                        store.lots.c.account_id == row.id, store.lots.c.remaining > 0)), now))
                    continue
                cond = [store.entries.c.account_id == row.id]
                if as_of is not None:
                    cond.append(store.entries.c.effective_at <= as_of)
                if known_at is not None:
                    cond.append(store.entries.c.recorded_at <= known_at)
                total = conn.execute(select(func.coalesce(func.sum(store.entries.c.amount), 0))
                                     .where(*cond)).scalar_one()
                views.append(BalanceView(customer, c, from_minor(int(total), c), as_of=as_of or known_at))
        return views

    def balances_with_prefix(self, prefix: str) -> dict[tuple[str, str], BalanceView]:
        """Current balance views (with `available`, as `balance` computes it) of every customer whose key
        starts with `prefix`, keyed by (customer, currency); two queries however many accounts."""
        acc, lots = store.accounts, store.lots
        with self.engine.connect() as conn:
            mine = acc.c.customer_key.startswith(prefix, autoescape=True)
            rows = conn.execute(select(acc).where(mine)).all()
            ids = select(acc.c.id).where(mine)
            lots_of = store.load_lots_by_account(conn, and_(lots.c.account_id.in_(ids), lots.c.remaining > 0))
        now = self.clock()
        out: dict[tuple[str, str], BalanceView] = {}
        for row in rows:
            out[(row.customer_key, row.currency)] = _current_view(row, lots_of.get(row.id, []), now)
        return out

    def accounts(self, *, batch: int = 5000) -> Iterator[BalanceView]:
        """Every account with its balance, streamed in customer order."""
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=batch).execute(_ALL_BALANCES)
            for customer, cur, balance, debt, limit in rows:
                yield BalanceView(customer, cur, Decimal(fmt(balance, cur)), debt=Decimal(fmt(debt, cur)),
                                  credit_limit=Decimal(fmt(limit, cur)))

    def history(self, customer: str, currency: str | None = None, *, start: datetime | None = None,
                end: datetime | None = None) -> list[Statement]:
        """Statements per currency: entries with start <= effective time < end, in business-time order."""
        start, end = as_utc(start, "start"), as_utc(end, "end")
        e = store.entries
        out = []
        with self.engine.connect() as conn:
            for view in self.balance(customer, currency):
                c = view.currency
                acc_id = conn.execute(select(store.accounts.c.id).where(
                    store.accounts.c.customer_key == customer, store.accounts.c.currency == c)).scalar_one()
                opening = 0
                if start is not None:
                    opening = int(conn.execute(select(func.coalesce(func.sum(e.c.amount), 0)).where(
                        e.c.account_id == acc_id, e.c.effective_at < start)).scalar_one())
                q = select(e).where(e.c.account_id == acc_id)
                if start is not None:
                    q = q.where(e.c.effective_at >= start)
                if end is not None:
                    q = q.where(e.c.effective_at < end)
                running = opening
                rows = []
                for r in conn.execute(q.order_by(e.c.effective_at, e.c.id)):
                    running += r.amount
                    rows.append({"id": r.id, "kind": r.kind, "amount": fmt(r.amount, c),
                                 "running": fmt(running, c), "balance_after": fmt(r.balance_after, c),
                                 "effective_at": r.effective_at.isoformat(),
                                 "recorded_at": r.recorded_at.isoformat(), "key": r.posting_key,
                                 "source": f"{r.source_system}:{r.source_id}" if r.source_system else None,
                                 "memo": r.memo, "reverses": r.reverses_id})
                out.append(Statement(customer, c, start, end, from_minor(opening, c), from_minor(running, c),
                                     rows))
        return out

    def entries_after(self, customer: str, after: int = 0, limit: int = 100,
                      currency: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` entries of a customer with ids above `after`, in recording (id) order: a keyset
        page; NotFound when the customer has no account (in `currency`)."""
        cur = currency_code(currency) if currency else None
        e, acc = store.entries, store.accounts
        with self.engine.connect() as conn:
            query = select(acc.c.id, acc.c.currency).where(acc.c.customer_key == customer)
            if cur:
                query = query.where(acc.c.currency == cur)
            owned = dict(conn.execute(query).tuples().all())
            if not owned:
                what = f"customer {customer}" + (f" in {cur}" if cur else "")
                raise NotFound(f"{what} has no ledger account", customer=customer)
            rows = conn.execute(select(e).where(e.c.account_id.in_(list(owned)), e.c.id > after)
                                .order_by(e.c.id).limit(limit)).all()
        out = []
        for r in rows:
            c = owned[r.account_id]
            out.append({"id": r.id, "currency": c, "kind": r.kind, "amount": fmt(r.amount, c),
                        "balance_after": fmt(r.balance_after, c), "effective_at": r.effective_at.isoformat(),
                        "recorded_at": r.recorded_at.isoformat(), "key": r.posting_key,
                        "source": f"{r.source_system}:{r.source_id}" if r.source_system else None,
                        "memo": r.memo, "reverses": r.reverses_id})
        return out

    def entry(self, entry_id: int) -> dict[str, Any]:
        """One entry with its allocations."""
        check_entry_id(entry_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(store.entries, store.accounts.c.currency, store.accounts.c.customer_key)
                               .join(store.accounts, store.accounts.c.id == store.entries.c.account_id)
                               .where(store.entries.c.id == entry_id)).first()
            if row is None:
                raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
            allocs = conn.execute(select(store.allocations.c.lot_id, store.allocations.c.amount)
                                  .where(store.allocations.c.entry_id == entry_id)).all()
        c = row.currency
        return {"id": row.id, "customer": row.customer_key, "currency": c, "kind": row.kind,
                "amount": fmt(row.amount, c), "balance_after": fmt(row.balance_after, c),
                "effective_at": row.effective_at.isoformat(), "recorded_at": row.recorded_at.isoformat(),
                "key": row.posting_key, "memo": row.memo, "reverses": row.reverses_id,
                "allocations": [{"lot_id": a.lot_id, "amount": fmt(a.amount, c)} for a in allocs]}


def _current_view(row: Any, open_lots: list[LotState], now: datetime) -> BalanceView:
    """An account row and its open lots as the balance now, with what is available to spend."""
    c = row.currency
    state = AccountState(row.id, row.customer_key, c, row.balance, row.debt, row.credit_limit, open_lots)
    return BalanceView(row.customer_key, c, from_minor(row.balance, c), from_minor(state.available(now), c),
                       from_minor(row.debt, c), from_minor(row.credit_limit, c))
