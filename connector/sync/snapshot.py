"""What reconcile reads before it decides anything, a page of customers at a time: their sync state and
the ledger's figures, and from them each customer's `Facts` (orphaned accounts included, as customer-like
rows)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
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
from connector.sync.orphans import HOLDING, no_customer, orphaned_keys

StateRow = Row[Any]
PAGE = 500  # customers reconcile derives at a time: its memory stays flat however many there are


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
    """The pulled records of a page of customers, grouped the way reconcile looks them up."""

    contracts: dict[str, list[StateRow]]  # customer CRM id -> its live contracts
    items: dict[str, list[StateRow]]  # customer CRM id -> its items
    sent: dict[str, dict[str, Any]]  # customer CRM id -> CRM field -> the value last written
    flags: dict[str, list[StateRow]]  # customer key -> its open flags
    contract_names: dict[str, str]  # contract record key -> its name
    paid_into: dict[str, list[StateRow]] = field(default_factory=dict)  # account key -> posted payments


@dataclass(frozen=True)
class LedgerFigures:
    """The ledger's accounts and figures of a page of customers."""

    accounts: dict[str, list[StateRow]]  # customer key -> its accounts
    sums: dict[int, StateRow]  # account id -> consumed sums and last entry
    available: dict[tuple[str, str], Decimal]  # (customer key, currency) -> available now
    standings: dict[tuple[str, str], Standing]
    orphans: set[str]  # account keys with no live customer (of the whole connection)

    def last_entry(self, key: str) -> Any:
        """The newest ledger entry id on the customer's accounts (evidence of what a plan saw)."""
        return max((s.last_entry for a in self.accounts.get(key, [])
                    if (s := self.sums.get(a.id)) is not None), default=None)


def customer_pages(ctx: Ctx, size: int = PAGE) -> Iterator[list[StateRow]]:
    """The connection's customers in CRM id order, `size` at a time (reconcile holds one page at once)."""
    c = t.customers.c
    after: str | None = None
    while True:
        where = [c.connection == ctx.connection] + ([c.crm_id > after] if after is not None else [])
        with ctx.engine.connect() as conn:
            page = list(conn.execute(select(t.customers).where(*where).order_by(c.crm_id).limit(size)).all())
        if not page:
            return
        yield page
        after = page[-1].crm_id


def count_customers(ctx: Ctx) -> int:
    """How many customers the connection has pulled (deleted ones included)."""
    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.customers)
                                .where(t.customers.c.connection == ctx.connection)).scalar_one())


def load_state(ctx: Ctx, now: datetime, refs: Collection[str]) -> SyncState:
    """Read the sync state of a page of customers, by CRM id (an orphaned account's reference stands for its
    customer); posted payments grouped by the account they paid into."""
    c = ctx.connection
    refs = sorted(set(refs))
    keys = [ctx.customer_key(ref) for ref in refs]
    # a holding account's payment names no customer: it is found by its own id
    held_by = sorted(ref.removeprefix(HOLDING) for ref in refs if ref.startswith(HOLDING))
    i = t.items.c
    item_cols = (i.kind, i.crm_id, i.customer_id, i.contract_id, i.currency, i.amount, i.at, i.status,
                 i.event, i.event_at, i.version)
    with ctx.engine.connect() as conn:
        contracts = conn.execute(select(t.contracts).where(
            t.contracts.c.connection == c, t.contracts.c.customer_id.in_(refs),
            t.contracts.c.deleted_at.is_(None))).all()
        items = conn.execute(select(*item_cols).where(i.connection == c, i.customer_id.in_(refs))).all()
        holding = [row for row in conn.execute(select(*item_cols).where(
            i.connection == c, i.kind == "payment", i.crm_id.in_(held_by))) if no_customer(row.customer_id)] \
            if held_by else []
        sent = conn.execute(select(t.sent).where(t.sent.c.connection == c, t.sent.c.crm_id.in_(refs))).all()
        flags = conn.execute(select(t.flags).where(t.flags.c.connection == c, t.flags.c.customer_id.in_(keys),
                                                   t.flags.c.cleared_at.is_(None))).all()
    out = SyncState(defaultdict(list), defaultdict(list), defaultdict(dict), defaultdict(list), {})
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
    for row in [*items, *holding]:
        if row.kind == "payment" and row.status == "posted":
            paid_into[ctx.account_of("payment", row.customer_id, row.crm_id)].append(row)
    for paid in paid_into.values():
        paid.sort(key=lambda i: (aware(i.at) if i.at else now, i.crm_id))
    out.paid_into = paid_into
    return out


def load_ledger(ctx: Ctx, now: datetime, keys: Collection[str], orphans: set[str]) -> LedgerFigures:
    """Read the ledger's accounts, consumption sums, available amounts and standings of a page of customers
    (by customer key); `orphans` are the connection's orphaned account keys."""
    m = ctx.mapping
    tier_from = now - timedelta(days=m.tiers.consumed_window_days)
    run_from = now - timedelta(days=m.rules.runway_window_days)
    a, e = store.accounts, store.entries
    consume = e.c.kind == "consume"
    wanted = sorted(keys)
    with ctx.engine.connect() as conn:
        mine = store.one_of(conn, a.c.customer_key, wanted)
        accounts = conn.execute(select(a.c.id, a.c.customer_key, a.c.currency, a.c.balance, a.c.debt,
                                       a.c.credit_limit).where(mine)).all()
        sums = conn.execute(select(
            e.c.account_id, func.max(e.c.id).label("last_entry"), func.max(e.c.effective_at).label("last_at"),
            func.coalesce(func.sum(case((consume, -e.c.amount), else_=0)), 0).label("consumed"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= tier_from), -e.c.amount),
                                        else_=0)), 0).label("consumed_tier"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= run_from), -e.c.amount),
                                        else_=0)), 0).label("consumed_runway"))
            .join(a, a.c.id == e.c.account_id).where(mine).group_by(e.c.account_id)).all()
        rules = StandingRules(m.rules.overdue_grace_days, m.rules.expiring_soon_days)
        standings = standing.load(conn, now, rules, customers=wanted, orphaned=orphans)
    by_customer: dict[str, list[StateRow]] = defaultdict(list)
    for row in accounts:
        by_customer[row.customer_key].append(row)
    views = ctx.ledger.queries.balances_of(wanted)
    available = {k: v.available for k, v in views.items() if v.available is not None}
    return LedgerFigures(by_customer, {s.account_id: s for s in sums}, available, standings, orphans)


def name_contracts(ctx: Ctx, state: SyncState, ledger: LedgerFigures) -> None:
    """Add the names of contracts the page's standings cite that belong to a customer outside the page."""
    prefix = f"{ctx.mapping.crm}:{ctx.mapping.contracts.module}:"
    cited = {ref for st in ledger.standings.values()
             for ref in (st.ends_ref, *(p.contract_ref for p in st.overdue))}
    missing = sorted(ref.removeprefix(prefix) for ref in cited
                     if ref.startswith(prefix) and ref not in state.contract_names)
    if not missing:
        return
    c = t.contracts.c
    with ctx.engine.connect() as conn:
        for crm_id, payload in conn.execute(select(c.crm_id, c.payload).where(
                c.connection == ctx.connection, c.crm_id.in_(missing), c.deleted_at.is_(None))):
            name = (loads(payload) or {}).get("name")
            if name:
                state.contract_names[prefix + crm_id] = str(name)


def connection_orphans(ctx: Ctx) -> set[str]:
    """The connection's orphaned account keys (accounts under its customer prefix with no live customer)."""
    with ctx.engine.connect() as conn:
        return orphaned_keys(conn, ctx.connection, ctx.customer_key(""))


def aware(value: datetime) -> datetime:
    """A stored time with its zone (SQLite returns naive UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def orphan_customers(ctx: Ctx, orphans: set[str], now: datetime) -> list[OrphanCustomer]:
    """Customer-like rows for orphaned accounts the CRM has no customer record for (never there, not a
    customer, or a payment without a customer): handled like a deleted customer (nothing is written to
    the CRM). Every `orphaned` task is tied to the first payment that brought the money."""
    prefix = ctx.customer_key("")
    refs = sorted(key[len(prefix):] for key in orphans)
    c = t.customers.c
    known: set[str] = set()
    with ctx.engine.connect() as conn:  # a deleted customer's account is orphaned too, but it has its row
        for start in range(0, len(refs), PAGE):
            known |= set(conn.execute(select(c.crm_id).where(
                c.connection == ctx.connection, c.crm_id.in_(refs[start:start + PAGE]))).scalars())
    keys = [prefix + ref for ref in refs if ref not in known]
    out = []
    for start in range(0, len(keys), PAGE):
        page = keys[start:start + PAGE]
        state = load_state(ctx, now, [key[len(prefix):] for key in page])
        ledger = load_ledger(ctx, now, page, orphans)
        out += [row for key in page if (row := _orphan(ctx, key, state, ledger, now)) is not None]
    return out


def _orphan(ctx: Ctx, key: str, state: SyncState, ledger: LedgerFigures,
            now: datetime) -> OrphanCustomer | None:
    accounts = ledger.accounts.get(key, [])
    paid = state.paid_into.get(key, [])
    if not accounts or not (paid or state.flags.get(key)):
        return None
    prefix = ctx.customer_key("")
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
    return OrphanCustomer(crm_id=ref, name=f"(no customer) {ref}", currency=acc.currency, deleted_at=now,
                          orphan_detail=detail)

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
