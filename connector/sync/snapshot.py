"""What reconcile reads before it decides anything: the connection's sync state and the ledger's figures, and
from them each customer's `Facts` (orphaned accounts included, as customer-like rows)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, case, func, select

from connector.db.rows import loads
from connector.ledger import standing, store
from connector.ledger.standing import Standing, StandingRules
from connector.money import from_minor
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.derive import Facts
from connector.sync.orphans import HOLDING, orphaned_keys

StateRow = Row[Any]


@dataclass(frozen=True)
class OrphanCustomer:
    """A customer-like row for an orphaned ledger account (no customer record in the CRM)."""

    crm_id: str
    name: str
    currency: str
    deleted_at: datetime
    orphan_detail: str
    tier: str | None = None
    fields: str | None = None
    owner_id: str | None = None
    owner_name: str | None = None


Customer = StateRow | OrphanCustomer


@dataclass
class SyncState:
    """The connection's pulled records, grouped the way reconcile looks them up."""

    customers: list[StateRow]
    contracts: dict[str, list[StateRow]]  # customer CRM id -> its live contracts
    items: dict[str, list[StateRow]]  # customer CRM id -> its items
    sent: dict[str, dict[str, Any]]  # customer CRM id -> CRM field -> the value last written
    flags: dict[str, list[StateRow]]  # customer key -> its open flags
    contract_names: dict[str, str]  # contract record key -> its name
    paid_into: dict[str, list[StateRow]] = field(default_factory=dict)  # account key -> posted payments


@dataclass(frozen=True)
class LedgerFigures:
    """The ledger's accounts and figures of the connection's customers."""

    accounts: dict[str, list[StateRow]]  # customer key -> its accounts
    sums: dict[int, StateRow]  # account id -> consumed sums and last entry
    available: dict[tuple[str, str], Decimal]  # (customer key, currency) -> available now
    standings: dict[tuple[str, str], Standing]
    orphans: set[str]  # account keys with no live customer

    def last_entry(self, key: str) -> Any:
        """The newest ledger entry id on the customer's accounts (evidence of what a plan saw)."""
        return max((s.last_entry for a in self.accounts.get(key, [])
                    if (s := self.sums.get(a.id)) is not None), default=None)


def load_state(ctx: Ctx, now: datetime) -> SyncState:
    """Read the connection's sync state; posted payments grouped by the account they paid into."""
    c = ctx.connection
    with ctx.engine.connect() as conn:
        customers = list(conn.execute(select(t.customers).where(t.customers.c.connection == c)).all())
        contracts = conn.execute(select(t.contracts).where(t.contracts.c.connection == c,
                                                           t.contracts.c.deleted_at.is_(None))).all()
        i = t.items.c
        items = conn.execute(select(i.kind, i.crm_id, i.customer_id, i.contract_id, i.currency, i.amount,
                                    i.at, i.status, i.event, i.event_at, i.version)
                             .where(i.connection == c)).all()
        sent = conn.execute(select(t.sent).where(t.sent.c.connection == c)).all()
        flags = conn.execute(select(t.flags).where(t.flags.c.connection == c,
                                                   t.flags.c.cleared_at.is_(None))).all()
    out = SyncState(customers, defaultdict(list), defaultdict(list), defaultdict(dict), defaultdict(list), {})
    prefix = f"{ctx.mapping.crm}:{ctx.mapping.contracts.module}:"
    for row in contracts:
        out.contracts[row.customer_id].append(row)
        name = (loads(row.payload) or {}).get("name")
        if name:
            out.contract_names[prefix + row.crm_id] = str(name)
    for row in items:
        out.items[row.customer_id].append(row)
    for row in sent:
        out.sent[row.crm_id][row.field] = row.value
    for row in flags:
        out.flags[row.customer_id].append(row)
    paid_into: dict[str, list[StateRow]] = defaultdict(list)
    for rows in out.items.values():
        for item in rows:
            if item.kind == "payment" and item.status == "posted":
                paid_into[ctx.account_of("payment", item.customer_id, item.crm_id)].append(item)
    for paid in paid_into.values():
        paid.sort(key=lambda i: (aware(i.at) if i.at else now, i.crm_id))
    out.paid_into = paid_into
    return out


def load_ledger(ctx: Ctx, now: datetime) -> LedgerFigures:
    """Read the ledger's accounts, consumption sums, available amounts and standings of the customers."""
    m = ctx.mapping
    prefix = f"{m.crm}:{m.customers.module}:"
    tier_from = now - timedelta(days=m.tiers.consumed_window_days)
    run_from = now - timedelta(days=m.rules.runway_window_days)
    a, e = store.accounts, store.entries
    consume = e.c.kind == "consume"
    with ctx.engine.connect() as conn:
        accounts = conn.execute(select(a.c.id, a.c.customer_key, a.c.currency, a.c.balance, a.c.debt,
                                       a.c.credit_limit)
                                .where(a.c.customer_key.startswith(prefix, autoescape=True))).all()
        sums = conn.execute(select(
            e.c.account_id, func.max(e.c.id).label("last_entry"), func.max(e.c.effective_at).label("last_at"),
            func.coalesce(func.sum(case((consume, -e.c.amount), else_=0)), 0).label("consumed"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= tier_from), -e.c.amount),
                                        else_=0)), 0).label("consumed_tier"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= run_from), -e.c.amount),
                                        else_=0)), 0).label("consumed_runway"))
            .join(a, a.c.id == e.c.account_id).where(a.c.customer_key.startswith(prefix, autoescape=True))
            .group_by(e.c.account_id)).all()
    by_customer: dict[str, list[StateRow]] = defaultdict(list)
    for row in accounts:
        by_customer[row.customer_key].append(row)
    views = ctx.ledger.balances_with_prefix(prefix)
    available = {k: v.available for k, v in views.items() if v.available is not None}
    key_prefix = ctx.customer_key("")
    with ctx.engine.connect() as conn:
        orphans = orphaned_keys(conn, ctx.connection, key_prefix)
        rules = StandingRules(m.rules.overdue_grace_days, m.rules.expiring_soon_days)
        standings = standing.load(conn, now, rules, prefix=key_prefix, orphaned=orphans)
    return LedgerFigures(by_customer, {s.account_id: s for s in sums}, available, standings, orphans)


def aware(value: datetime) -> datetime:
    """A stored time with its zone (SQLite returns naive UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def orphan_customers(ctx: Ctx, state: SyncState, ledger: LedgerFigures,
                     now: datetime) -> list[OrphanCustomer]:
    """Customer-like rows for orphaned accounts the CRM has no customer record for (never there, not a
    customer, or a payment without a customer): handled like a deleted customer (nothing is written to
    the CRM). Every `orphaned` task is tied to the first payment that brought the money."""
    known = {ctx.customer_key(c.crm_id) for c in state.customers}
    prefix = ctx.customer_key("")
    out = []
    for key in sorted(ledger.orphans - known):
        accounts = ledger.accounts.get(key, [])
        paid = state.paid_into.get(key, [])
        if not accounts or not (paid or state.flags.get(key)):
            continue
        acc = max(accounts, key=lambda r: abs(r.balance))
        balance = from_minor(acc.balance, acc.currency)
        ids = ", ".join(i.crm_id for i in paid[:5]) + (f" and {len(paid) - 5} more" if len(paid) > 5 else "")
        ref = key[len(prefix):]
        if ref.startswith(HOLDING):
            given = paid[0].customer_id if paid else ""
            named = f"reference {given!r}" if given else "reference empty"
            detail = (f"payment {ids} names no customer ({named}); "
                      f"the ledger keeps {balance} {acc.currency} on the holding account {key}")
        else:
            detail = (f"payment {ids} names customer {ref}, which is not a customer in the CRM (missing, or "
                      f"another kind of record); the ledger keeps {balance} {acc.currency} on its account")
        out.append(OrphanCustomer(crm_id=ref, name=f"(no customer) {ref}", currency=acc.currency,
                                  deleted_at=now, orphan_detail=detail))
    return out


def customer_facts(ctx: Ctx, cust: Customer, state: SyncState, ledger: LedgerFigures) -> Facts:
    """What the rules look at for one customer, in its primary currency."""
    key = ctx.customer_key(cust.crm_id)
    accounts = ledger.accounts.get(key, [])
    currency = cust.currency
    if currency is None and accounts:
        currency = max(accounts, key=lambda r: abs(r.balance)).currency
    currency = currency or ctx.mapping.currency
    f = Facts(customer=key, name=cust.name or cust.crm_id, currency=currency,
              deleted=cust.deleted_at is not None, prev_tier=cust.tier)
    f.standing = ledger.standings.get((key, currency)) if currency else None
    f.contract_names = state.contract_names
    f.orphan_detail = getattr(cust, "orphan_detail", "")
    fields = loads(cust.fields) or {}
    f.extras = {name: fields.get(fm.crm) for name, fm in ctx.mapping.customers.extra.items()}
    for acc in accounts:
        if acc.currency == currency:
            _account_facts(ctx, f, acc, key, currency, ledger)
    for row in state.contracts.get(cust.crm_id, []):
        payload = loads(row.payload) or {}
        if row.currency == currency or row.currency is None:
            f.contracts.append(payload)
    for item in state.items.get(cust.crm_id, []):
        if item.kind == "prepayment" and item.status == "native" and item.currency in (None, currency):
            f.native_balance = (f.native_balance or Decimal(0)) + Decimal(item.amount)
        if item.kind != "payment" or item.status != "posted" or item.currency != currency:
            continue
        amount = Decimal(item.amount)
        f.lifetime_prepaid += amount
        if item.contract_id:
            paid = f.paid_by_contract.get(item.contract_id, Decimal(0))
            f.paid_by_contract[item.contract_id] = paid + amount
        f.payments.append((item.crm_id, amount, item.currency, item.at.date()))
    return f


def _account_facts(ctx: Ctx, f: Facts, acc: StateRow, key: str, currency: str, ledger: LedgerFigures) -> None:
    f.has_account = True
    f.balance = from_minor(acc.balance, currency)
    # the ledger's own figure; an account opened since it was read (by another process) falls back to the
    # account row's balance + unused credit line until the next run
    f.available = ledger.available.get((key, currency),
                                       from_minor(acc.balance + acc.credit_limit - acc.debt, currency))
    s = ledger.sums.get(acc.id)
    if s is not None:
        f.lifetime_consumed = from_minor(int(s.consumed), currency)
        f.consumed_tier_window = from_minor(int(s.consumed_tier), currency)
        f.consumed_runway_window = from_minor(int(s.consumed_runway), currency)
        f.last_activity = s.last_at if s.last_at is None or s.last_at.tzinfo else s.last_at.replace(
            tzinfo=ctx.started_at.tzinfo)
