"""Reconcile: ledger + pulled CRM state -> derived values, flags, and the outbox plan of writes and tasks."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import case, func, select

from connector.adapters.base import TaskRequest
from connector.ledger import standing, store
from connector.ledger.standing import Standing, StandingRules
from connector.mapping.models import FieldMap
from connector.money import from_minor
from connector.db.rows import dumps, loads
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.derive import Derived, Facts, Flag, derive
from connector.sync.guard import Tally, enforce
from connector.sync.holds import held_customers
from connector.sync.orphans import HOLDING, orphaned_keys

EVENT_FLAGS = ("payment_changed", "payment_deleted", "manual_edit")


def norm(fm: FieldMap, value: Any) -> str | None:
    """A field value in one canonical text form, so ours and the CRM's compare equal."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        value = value[0]
    try:
        if fm.type in ("money", "decimal"):
            return format(Decimal(str(value)).normalize(), "f")
        if fm.type == "integer":
            return str(int(Decimal(str(value))))
    except ArithmeticError:
        return str(value)
    if fm.type == "boolean":
        return str(value).lower()
    return str(value)


def _ledger_facts(ctx: Ctx) -> tuple[dict[str, list[Any]], dict[int, Any]]:
    prefix = f"{ctx.mapping.crm}:{ctx.mapping.customers.module}:"
    now = ctx.clock()
    tier_from = now - timedelta(days=ctx.mapping.tiers.consumed_window_days)
    run_from = now - timedelta(days=ctx.mapping.rules.runway_window_days)
    a, e = store.accounts, store.entries
    consume = e.c.kind == "consume"
    with ctx.engine.connect() as conn:
        accounts = conn.execute(select(a.c.id, a.c.customer_key, a.c.currency, a.c.balance, a.c.debt,
                                       a.c.credit_limit).where(a.c.customer_key.startswith(prefix, autoescape=True))).all()
        sums = conn.execute(select(
            e.c.account_id, func.max(e.c.id).label("last_entry"), func.max(e.c.effective_at).label("last_at"),
            func.coalesce(func.sum(case((consume, -e.c.amount), else_=0)), 0).label("consumed"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= tier_from), -e.c.amount), else_=0)), 0)
            .label("consumed_tier"),
            func.coalesce(func.sum(case(((consume) & (e.c.effective_at >= run_from), -e.c.amount), else_=0)), 0)
            .label("consumed_runway"))
            .join(a, a.c.id == e.c.account_id).where(a.c.customer_key.startswith(prefix, autoescape=True))
            .group_by(e.c.account_id)).all()
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for row in accounts:
        by_customer[row.customer_key].append(row)
    return by_customer, {s.account_id: s for s in sums}


def _load(ctx: Ctx) -> dict[str, Any]:
    c = ctx.connection
    with ctx.engine.connect() as conn:
        customers = conn.execute(select(t.customers).where(t.customers.c.connection == c)).all()
        contracts = conn.execute(select(t.contracts).where(t.contracts.c.connection == c,
                                                           t.contracts.c.deleted_at.is_(None))).all()
        items = conn.execute(select(t.items.c.kind, t.items.c.crm_id, t.items.c.customer_id, t.items.c.contract_id,
                                    t.items.c.currency, t.items.c.amount, t.items.c.at, t.items.c.status,
                                    t.items.c.event, t.items.c.event_at, t.items.c.version)
                             .where(t.items.c.connection == c)).all()
        sent = conn.execute(select(t.sent).where(t.sent.c.connection == c)).all()
        flags = conn.execute(select(t.flags).where(t.flags.c.connection == c, t.flags.c.cleared_at.is_(None))).all()
    out: dict[str, Any] = {"customers": customers, "contracts": defaultdict(list), "items": defaultdict(list),
                           "sent": defaultdict(dict), "flags": defaultdict(list)}
    prefix = f"{ctx.mapping.crm}:{ctx.mapping.contracts.module}:"
    out["contract_names"] = {}
    for row in contracts:
        out["contracts"][row.customer_id].append(row)
        name = (loads(row.payload) or {}).get("name")
        if name:
            out["contract_names"][prefix + row.crm_id] = str(name)
    for row in items:
        out["items"][row.customer_id].append(row)
    for row in sent:
        out["sent"][row.crm_id][row.field] = row.value
    for row in flags:
        out["flags"][row.customer_id].append(row)
    return out


def _facts(ctx: Ctx, cust: Any, data: dict[str, Any], accounts: list[Any], sums: dict[int, Any],
           available: dict[tuple[str, str], Decimal], standings: dict[tuple[str, str], Standing]) -> Facts:
    key = ctx.customer_key(cust.crm_id)
    currency = cust.currency
    if currency is None and accounts:
        currency = max(accounts, key=lambda r: abs(r.balance)).currency
    currency = currency or ctx.mapping.currency
    f = Facts(customer=key, name=cust.name or cust.crm_id, currency=currency, deleted=cust.deleted_at is not None,
              prev_tier=cust.tier)
    f.standing = standings.get((key, currency)) if currency else None
    f.contract_names = data["contract_names"]
    f.orphan_detail = getattr(cust, "orphan_detail", "")
    fields = loads(cust.fields) or {}
    f.extras = {name: fields.get(fm.crm) for name, fm in ctx.mapping.customers.extra.items()}
    for acc in accounts:
        if acc.currency != currency:
            continue
        f.has_account = True
        f.balance = from_minor(acc.balance, currency)
        # the ledger's own figure; an account opened since it was read (by another process) falls back to the
        # account row's balance + unused credit line until the next run
        f.available = available.get((key, currency), from_minor(acc.balance + acc.credit_limit - acc.debt, currency))
        s = sums.get(acc.id)
        if s is not None:
            f.lifetime_consumed = from_minor(int(s.consumed), currency)
            f.consumed_tier_window = from_minor(int(s.consumed_tier), currency)
            f.consumed_runway_window = from_minor(int(s.consumed_runway), currency)
            f.last_activity = s.last_at if s.last_at is None or s.last_at.tzinfo else s.last_at.replace(
                tzinfo=ctx.started_at.tzinfo)
    for row in data["contracts"].get(cust.crm_id, []):
        payload = loads(row.payload) or {}
        if row.currency == currency or row.currency is None:
            f.contracts.append(payload)
    for item in data["items"].get(cust.crm_id, []):
        if item.kind == "prepayment" and item.status == "native" and item.currency in (None, currency):
            f.native_balance = (f.native_balance or Decimal(0)) + Decimal(item.amount)
        if item.kind != "payment" or item.status != "posted" or item.currency != currency:
            continue
        amount = Decimal(item.amount)
        f.lifetime_prepaid += amount
        if item.contract_id:
            f.paid_by_contract[item.contract_id] = f.paid_by_contract.get(item.contract_id, Decimal(0)) + amount
        f.payments.append((item.crm_id, amount, item.currency, item.at.date()))
    return f


def _orphan_rows(ctx: Ctx, data: dict[str, Any], orphans: set[str], by_customer: dict[str, list[Any]],
                 now: datetime) -> list[SimpleNamespace]:
    """Customer-like rows for orphaned accounts the CRM has no customer record for (never there, not a
    customer, or a payment without a customer): handled like a deleted customer (nothing is written to
    the CRM). Every `orphaned` task is tied to the first payment that brought the money."""
    known = {ctx.customer_key(c.crm_id) for c in data["customers"]}
    payments = data["paid_into"]
    prefix = ctx.customer_key("")
    out = []
    for key in sorted(orphans - known):
        accounts = by_customer.get(key, [])
        paid = payments.get(key, [])
        if not accounts or not (paid or data["flags"].get(key)):
            continue
        acc = max(accounts, key=lambda r: abs(r.balance))
        balance = from_minor(acc.balance, acc.currency)
        ids = ", ".join(i.crm_id for i in paid[:5]) + (f" and {len(paid) - 5} more" if len(paid) > 5 else "")
        ref = key[len(prefix):]
        if ref.startswith(HOLDING):
            given = paid[0].customer_id if paid else ""
            detail = (f"payment {ids} names no customer ({f'reference {given!r}' if given else 'reference empty'}); "
                      f"the ledger keeps {balance} {acc.currency} on the holding account {key}")
        else:
            detail = (f"payment {ids} names customer {ref}, which is not a customer in the CRM (missing, or "
                      f"another kind of record); the ledger keeps {balance} {acc.currency} on its account")
        out.append(SimpleNamespace(
            crm_id=ref, name=f"(no customer) {ref}", currency=acc.currency, deleted_at=now, tier=None,
            fields=None, owner_id=None, owner_name=None, orphan_detail=detail))
    return out


def _event_flags(ctx: Ctx, cust: Any, data: dict[str, Any], since: datetime) -> list[Flag]:
    key = ctx.customer_key(cust.crm_id)
    out = []
    for item in data["items"].get(cust.crm_id, []):
        if item.event in ("payment_changed", "payment_deleted") and item.event_at is not None and \
                _aware(item.event_at) >= since:
            verb = "edited after posting: reversed and re-posted" if item.event == "payment_changed" else \
                "deleted after posting: reversed"
            out.append(Flag(item.event, f"ps:{item.event}:{key}:{item.crm_id}:v{item.version}",
                            f"payment {item.crm_id} ({item.amount} {item.currency}) {verb}"))
    for row in data["flags"].get(key, []):
        if row.code == "manual_edit" and _aware(row.opened_at) >= since:
            out.append(Flag(row.code, row.marker, row.detail))
    return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def desired_values(ctx: Ctx, d: Derived, flags: list[Flag]) -> dict[str, Any]:
    """Our value of each mapped write-back field, as it is sent (CRM field name -> value)."""
    wb = ctx.mapping.write_back
    codes = ",".join(sorted({f.code for f in flags}))
    ours: dict[str, Any] = {"balance": d.balance, "available": d.available, "tier": d.tier,
                            "flags": codes[:255] or None, "runway_days": d.runway_days, "points": d.points,
                            "lifetime_prepaid": d.lifetime_prepaid}
    out: dict[str, Any] = {}
    for name, fm in wb.items():
        if name == "reconciled_at":
            continue
        value = ours[name]
        if fm.type == "picklist" and isinstance(value, str):
            value = fm.to_crm(value)
        out[fm.crm] = value
    return out


def reconcile(ctx: Ctx) -> None:
    """Derive every customer's values and flags; persist flags and the outbox plan in one transaction."""
    m = ctx.mapping
    now = ctx.clock()
    today = now.date()
    data = _load(ctx)
    by_customer, sums = _ledger_facts(ctx)
    views = ctx.ledger.balances_with_prefix(f"{m.crm}:{m.customers.module}:")
    available = {k: v.available for k, v in views.items() if v.available is not None}
    by_crm = {fm.crm: (name, fm) for name, fm in m.write_back.items()}
    rules = {r.flag: r for r in m.tasks.rules}
    since = now - timedelta(days=m.rules.event_flag_days)
    ctx.held = held_customers(ctx)
    tally = Tally(first_sync=not data["sent"])
    counted = [r for rows in data["flags"].values() for r in rows if r.code not in EVENT_FLAGS]
    tally.open_flags, tally.open_tasks = len(counted), sum(r.task_id is not None for r in counted)
    flag_rows: list[dict[str, Any]] = []
    cleared: list[int] = []
    tiers: list[tuple[str, str]] = []
    plans: list[dict[str, Any]] = []
    prefix = ctx.customer_key("")
    with ctx.engine.connect() as conn:
        orphans = orphaned_keys(conn, ctx.connection, prefix)
        standings = standing.load(conn, now, StandingRules(m.rules.overdue_grace_days, m.rules.expiring_soon_days),
                                  prefix=prefix, orphaned=orphans)
    paid_into: dict[str, list[Any]] = defaultdict(list)  # account key -> posted payments, oldest first
    for rows in data["items"].values():
        for item in rows:
            if item.kind == "payment" and item.status == "posted":
                paid_into[ctx.account_of("payment", item.customer_id, item.crm_id)].append(item)
    for items in paid_into.values():
        items.sort(key=lambda i: (_aware(i.at) if i.at else now, i.crm_id))
    data["paid_into"] = paid_into
    customers = [*data["customers"], *_orphan_rows(ctx, data, orphans, by_customer, now)]
    total = len(customers)
    for done, cust in enumerate(customers):
        if done % 200 == 0:
            ctx.tick("reconcile", done, total)
        if cust.crm_id in ctx.held:  # a record of theirs came incomplete: leave them exactly as they are
            ctx.report.customers_held += 1
            continue
        key = ctx.customer_key(cust.crm_id)
        facts = _facts(ctx, cust, data, by_customer.get(key, []), sums, available, standings)
        if facts.deleted and not (facts.has_account and facts.balance != 0) and not data["flags"].get(key):
            continue
        d = derive(facts, m, today)
        who = f"{facts.name} ({key})"
        tally.customers += not facts.deleted
        if d.tier != cust.tier:
            tiers.append((cust.crm_id, d.tier))
        read = loads(cust.fields) or {}
        sent = data["sent"].get(cust.crm_id, {})
        new_flags: list[Flag] = []
        changes: dict[str, Any] = {}
        base = [*d.flags, *_event_flags(ctx, cust, data, since)]
        flags = base
        if not facts.deleted:
            desired = desired_values(ctx, d, base)
            for crm_field in desired:
                last = sent.get(crm_field)
                have = norm(by_crm[crm_field][1], read.get(crm_field)) if crm_field in read else last
                if last is not None and have != last:
                    new_flags.append(Flag("manual_edit", f"ps:manual_edit:{key}:{crm_field}:{ctx.run_id}",
                                          f"{crm_field} was changed in the CRM from {last} to {have}"))
            flags = [*base, *new_flags]
            if new_flags:
                desired = desired_values(ctx, d, flags)
            for crm_field, value in desired.items():
                fm = by_crm[crm_field][1]
                want, last = norm(fm, value), sent.get(crm_field)
                have = norm(fm, read.get(crm_field)) if crm_field in read else last
                if want != have or (last is not None and have != last):
                    changes[crm_field] = (value, have)
        if changes and "reconciled_at" in m.write_back:
            changes[m.write_back["reconciled_at"].crm] = (now.replace(microsecond=0), None)
        if changes:
            evidence = {"run": ctx.run_id, "customer": key, "balance": format(d.balance, "f"),
                        "currency": facts.currency,
                        "last_entry": max((s.last_entry for a in by_customer.get(key, [])
                                           if (s := sums.get(a.id)) is not None), default=None)}
            plans.append({"kind": "write", "module": m.customers.module, "crm_id": cust.crm_id,
                          "payload": dumps({k: v for k, (v, _o) in changes.items()}),
                          "evidence": dumps(evidence)})
            log = ctx.report.customer(key)["fields"]
            for k, (v, old) in changes.items():
                log[k] = f"{old} -> {v}"
            written = [f"{k} {old} -> {v}" for k, (v, old) in changes.items() if by_crm[k][0] != "reconciled_at"]
            # Only a value prepaid-sync wrote before and now rewrites counts: filling a field it never
            # wrote (a first sync, or one a first run left unfinished) changes nothing anybody relied on.
            if any(sent.get(k) is not None for k in changes if by_crm[k][0] != "reconciled_at"):
                tally.changed += 1
                tally.example(who, "write " + ", ".join(written))
        open_rows = {r.marker: r for r in data["flags"].get(key, [])}
        wanted = {f.marker: f for f in flags}
        for marker, row in open_rows.items():
            if marker not in wanted:
                cleared.append(row.id)
                rule = rules.get(row.code)
                closes = rule is not None and rule.close_when_cleared and row.task_id is not None
                if row.code not in EVENT_FLAGS:  # event flags clear by age: not counted by the guard
                    tally.cleared += 1
                    tally.closing += closes
                    tally.example(who, f"clear {row.code}" + (" and close its task" if closes else ""))
                if rule is not None and rule.close_when_cleared:
                    plans.append({"kind": "task_close", "module": "Tasks", "crm_id": cust.crm_id, "marker": marker,
                                  "payload": "{}", "evidence": dumps({"run": ctx.run_id, "flag": row.code})})
                    ctx.report.customer(key)["tasks_close"].append(marker)
        for marker, flag in wanted.items():
            if marker in open_rows:
                continue
            flag_rows.append({"connection": ctx.connection, "customer_id": key, "code": flag.code, "marker": marker,
                              "detail": flag.detail, "opened_at": now, "run_id": ctx.run_id})
            rule = rules.get(flag.code)
            if rule is None:
                continue
            values = {"customer": facts.name, "customer_id": cust.crm_id, "flag": flag.code, "detail": flag.detail,
                      "balance": format(d.balance, "f"), "currency": facts.currency or "", "tier": d.tier,
                      "runway_days": "-" if d.runway_days is None else str(d.runway_days),
                      "owner": cust.owner_name or cust.owner_id or ""}  # the name when the CRM or directory gave one
            owner = rule.assignee.removeprefix("user:") if rule.assignee != "owner" else cust.owner_id
            related = (m.customers.module, cust.crm_id)
            if flag.code == "orphaned" and paid_into.get(key):  # the customer record is gone: tie it to the money
                related = (m.payments.module, paid_into[key][0].crm_id)
            task = TaskRequest(marker=marker, subject=rule.subject.format_map(values)[:255],
                               description=rule.description.format_map(values),
                               due_date=today + timedelta(days=rule.due_in_days), owner_id=owner,
                               related_module=related[0], related_id=related[1], priority=rule.priority)
            plans.append({"kind": "task_open", "module": "Tasks", "crm_id": cust.crm_id, "marker": marker,
                          "payload": task.model_dump_json(), "evidence": dumps({"run": ctx.run_id,
                                                                                      "flag": flag.code})})
            ctx.report.customer(key)["tasks_open"].append(f"{flag.code}: {task.subject}")
    enforce(ctx, tally)  # a plan over the guard's limits stops here: nothing above is kept
    with ctx.engine.begin() as conn:
        for fid in cleared:
            conn.execute(t.flags.update().where(t.flags.c.id == fid).values(cleared_at=now))
        if flag_rows:
            conn.execute(t.flags.insert(), flag_rows)
        for crm_id, tier in tiers:
            conn.execute(t.customers.update().where(t.customers.c.connection == ctx.connection,
                                                    t.customers.c.crm_id == crm_id).values(tier=tier))
        for plan in plans:
            if plan["kind"] == "write":  # a newer plan replaces an unsent older one for the same record
                conn.execute(t.outbox.update().where(
                    t.outbox.c.connection == ctx.connection, t.outbox.c.kind == "write",
                    t.outbox.c.crm_id == plan["crm_id"], t.outbox.c.status.in_(("planned", "failed")))
                    .values(status="superseded", updated_at=now))
        if plans:
            conn.execute(t.outbox.insert(), [{"connection": ctx.connection, "run_id": ctx.run_id, "status": "planned",
                                              "attempts": 0, "created_at": now, "updated_at": now, "marker": None,
                                              **p} for p in plans])
    ctx.tick("reconcile", total, total)
    ctx.report.flags_opened += len(flag_rows)
    ctx.report.flags_cleared += len(cleared)

