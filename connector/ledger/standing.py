"""One derivation of a customer's standing: overdue, expiring, expired, orphaned.

The sync's flags (reconcile), the report and the statement all ask this module, over the same ledger
rows, so their figures agree by construction:

- terms: a customer's live contract rows (`contract_ref` not empty, `active`); a customer without any
  contract row falls back to its customer-level row (terms set by hand with `ledger terms set`);
- punctuality: each due date with an agreed amount is settled from the customer's deposits, oldest
  first (`match_payments`); one still open more than `overdue_grace_days` after it fell due is overdue;
- expiry: the live contract that started last (by `valid_from`) decides; while money remains, it has
  `expired` when its `valid_until` is before today and is `expiring` when it ends within
  `expiring_soon_days`;
- orphaned: the account belongs to no customer the CRM has (deleted, missing, not a customer record,
  or a payment without one) and holds money; which accounts those are is the caller's knowledge (the
  sync state), given as `orphaned`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.orm import aliased

from connector.ledger import store
from connector.ledger.tables import Terms

CODES = ("overdue", "expiring_soon", "expired", "orphaned")
terms_table = Terms.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StandingRules:
    """The knobs of the standing (the mapping's `rules` carry the same names)."""

    overdue_grace_days: int = 0
    expiring_soon_days: int = 30


@dataclass(frozen=True, slots=True)
class ContractTerm:
    """What the standing reads of one terms row (money in minor units)."""

    ref: str
    agreed: int | None
    due_date: date | None
    valid_from: date | None
    valid_until: date | None
    active: bool = True


@dataclass(frozen=True, slots=True)
class Payment:
    """One due date and when the money for it arrived."""

    contract_ref: str
    due_date: date
    agreed: int | None
    arrived: date | None
    days_late: int | None  # arrival minus due date (negative: early); for open ones, days overdue so far
    status: str  # on_time | late | open_overdue | pending


@dataclass(slots=True)
class Standing:
    """A customer's standing in one currency."""

    customer: str
    currency: str
    balance: int = 0
    payments: list[Payment] = field(default_factory=list)
    ends: date | None = None        # validity end of the contract that decides expiry
    ends_ref: str = ""
    expired: bool = False
    expiring: bool = False
    orphaned: bool = False

    @property
    def overdue(self) -> list[Payment]:
        """Due dates passed (beyond the grace days) with the money still missing."""
        return [p for p in self.payments if p.status == "open_overdue"]

    def codes(self) -> tuple[str, ...]:
        """The standing flag codes that hold, in `CODES` order."""
        on = {"overdue": bool(self.overdue), "expiring_soon": self.expiring, "expired": self.expired,
              "orphaned": self.orphaned}
        return tuple(c for c in CODES if on[c])


def match_payments(terms: list[tuple[str, date, int | None]], deposits: list[tuple[datetime, int]],
                   as_of: date, grace_days: int = 0) -> list[Payment]:
    """Settle due dates oldest first from deposits in time order (FIFO).

    `terms` are (contract_ref, due_date, agreed_amount). A due date with an agreed amount is paid
    when cumulative deposits reach it; without one, by the next deposit. Money arrives on the
    UTC date of the deposit that completes the amount. A due date still open is `open_overdue` only
    when more than `grace_days` have passed since it; within the grace it is `pending`.
    """
    out: list[Payment] = []
    queue = list(deposits)
    pos, carry, carry_at = 0, 0, None
    for ref, due, agreed in sorted(terms, key=lambda t: (t[1], t[0])):
        need = agreed if agreed and agreed > 0 else None
        arrived: date | None = None
        if need is None:
            if carry > 0 and carry_at is not None:
                arrived, carry = carry_at.date(), 0
            elif pos < len(queue):
                arrived = queue[pos][0].date()
                pos += 1
        else:
            while need > 0:
                if carry == 0:
                    if pos >= len(queue):
                        break
                    carry_at, carry = queue[pos]
                    pos += 1
                use = min(carry, need)
                need -= use
                carry -= use
            if need == 0 and carry_at is not None:
                arrived = carry_at.date()
        if arrived is not None:
            late = (arrived - due).days
            out.append(Payment(ref, due, agreed, arrived, late, "late" if late > 0 else "on_time"))
        elif as_of > due + timedelta(days=grace_days):
            out.append(Payment(ref, due, agreed, None, (as_of - due).days, "open_overdue"))
        else:
            out.append(Payment(ref, due, agreed, None, None, "pending"))
    return out


def standing_of(customer: str, currency: str, terms: Iterable[ContractTerm], deposits: list[tuple[datetime,
                                                                                                  int]],
                balance: int, today: date, rules: StandingRules, *, orphaned: bool = False) -> Standing:
    """The standing of one account from its terms rows, deposits (time order) and balance (pure)."""
    rows = list(terms)
    contracts = [t for t in rows if t.ref]
    chosen = [t for t in contracts if t.active] if contracts else [t for t in rows if t.active]
    st = Standing(customer, currency, balance)
    st.payments = match_payments([(t.ref, t.due_date, t.agreed) for t in chosen if t.due_date is not None],
                                 deposits, today, rules.overdue_grace_days)
    newest = max(chosen, key=lambda t: (t.valid_from or date.min, t.ref), default=None)
    st.orphaned = orphaned and balance != 0
    if newest is not None and newest.valid_until is not None:
        st.ends, st.ends_ref = newest.valid_until, newest.ref
        if balance > 0 and not st.orphaned:  # an orphan's one flag is `orphaned`: no customer to remind
            st.expired = newest.valid_until < today
            st.expiring = not st.expired and newest.valid_until <= today + timedelta(
                days=rules.expiring_soon_days)
    return st


def load(conn: Connection, as_of: datetime, rules: StandingRules, *, orphaned: Collection[str] = (),
         prefix: str | None = None, customers: Collection[str] | None = None,
         account_ids: tuple[int, int] | None = None) -> dict[tuple[str, str], Standing]:
    """The standing of every account (or those whose key starts with `prefix`, of `customers`, or with
    account_ids[0] <= id < account_ids[1]) at `as_of`.

    Balances and deposits count entries effective at or before `as_of`; a reversed deposit does not count.
    """
    a, e, t = store.accounts, store.entries, terms_table

    def scoped(col: Any) -> Any:
        if account_ids is not None:  # accounts by id; terms of their customers (other currencies drop out)
            lo, hi = account_ids
            mine = and_(a.c.id >= lo, a.c.id < hi)
            return mine if col is a.c.customer_key else col.in_(select(a.c.customer_key).where(mine))
        if customers is not None:
            return store.one_of(conn, col, sorted(customers))
        return col.startswith(prefix, autoescape=True) if prefix else and_(True)

    balances = {(r.customer_key, r.currency): int(r.bal or 0) for r in conn.execute(
        select(a.c.customer_key, a.c.currency, func.sum(e.c.amount).label("bal"))
        .join(e, and_(e.c.account_id == a.c.id, e.c.effective_at <= as_of), isouter=True)
        .where(scoped(a.c.customer_key)).group_by(a.c.customer_key, a.c.currency))}
    terms: dict[tuple[str, str], list[ContractTerm]] = defaultdict(list)
    for r in conn.execute(
            select(t.c.customer_key, t.c.currency, t.c.contract_ref, t.c.agreed_amount, t.c.due_date,
                   t.c.valid_from, t.c.valid_until, t.c.active).where(scoped(t.c.customer_key))):
        terms[(r.customer_key, r.currency)].append(ContractTerm(r.contract_ref, r.agreed_amount, r.due_date,
                                                                r.valid_from, r.valid_until, bool(r.active)))
    rev = aliased(e)
    # NOT EXISTS rather than NOT IN: the unique index on reverses_id answers it per deposit, where NOT IN
    # read every entry for its reversals each time (the same rows either way: reverses_id is never NULL here)
    reversed_ = (select(rev.c.id).where(rev.c.reverses_id == e.c.id, rev.c.kind == "reverse",
                                        rev.c.effective_at <= as_of).exists())
    # deposits only count against due dates: accounts without a due-dated terms row need none
    due = select(t.c.customer_key, t.c.currency).where(t.c.due_date.is_not(None)).distinct().subquery()
    deposits: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    dated = and_(due.c.customer_key == a.c.customer_key, due.c.currency == a.c.currency)
    for r in conn.execute(select(a.c.customer_key, a.c.currency, e.c.effective_at, e.c.amount)
                          .join(a, a.c.id == e.c.account_id).join(due, dated)
                          .where(scoped(a.c.customer_key), e.c.kind == "deposit", e.c.effective_at <= as_of,
                                 ~reversed_)
                          .order_by(a.c.customer_key, a.c.currency, e.c.effective_at, e.c.id)):
        at = r.effective_at if r.effective_at.tzinfo else r.effective_at.replace(tzinfo=UTC)
        deposits[(r.customer_key, r.currency)].append((at, int(r.amount)))
    today = as_of.date()
    orphans = set(orphaned)
    return {
        pair: standing_of(pair[0], pair[1], terms.get(pair, ()), deposits.get(pair, []), bal, today, rules,
                          orphaned=pair[0] in orphans)
        for pair, bal in balances.items()
    }


__all__ = ["CODES", "ContractTerm", "Payment", "Standing", "StandingRules", "load", "match_payments",
           "standing_of"]
