"""Reconcile: ledger + pulled CRM state -> derived values, flags, and the outbox plan of writes and tasks.

Three steps with typed values between them: derive (`CustomerView`: each customer's facts, derived
values, flags and the fields that differ), plan (`Plan`: flag rows, tiers, outbox rows, the guard's tally)
and persist (one transaction, only when the mass-change guard lets the plan through).
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from connector.adapters.base import TaskRequest
from connector.db.rows import dumps, loads
from connector.mapping.models import FieldMap, Mapping, TaskRule
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.derive import Derived, Facts, Flag, derive
from connector.sync.guard import Tally, enforce
from connector.sync.holds import held_customers
from connector.sync.snapshot import (PAGE, Customer, LedgerFigures, StateRow, SyncState, aware,
                                     connection_orphans, count_customers, customer_facts, customer_pages,
                                     load_ledger, load_state, name_contracts, orphan_customers)

EVENT_FLAGS = ("payment_changed", "payment_deleted", "manual_edit")
SPILL_IN_MEMORY = 4 << 20  # bytes of plan kept in memory before it goes to a temporary file


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



@dataclass(frozen=True)
class Inputs:
    """What each customer's derive and plan step reads: its page's snapshot, the time, the mapping's rules."""

    state: SyncState
    ledger: LedgerFigures
    now: datetime
    today: date
    since: datetime  # event flags raised since then are still shown
    by_crm: dict[str, tuple[str, FieldMap]]  # write-back CRM field -> (our name, its mapping)
    task_rules: dict[str, TaskRule]  # flag code -> the task it opens

    @classmethod
    def read(cls, ctx: Ctx, now: datetime, customers: Sequence[Customer], orphans: set[str]) -> Inputs:
        """Read the snapshot of a page of customers at the run's clock."""
        m = ctx.mapping
        state = load_state(ctx, now, [c.crm_id for c in customers])
        ledger = load_ledger(ctx, now, [ctx.customer_key(c.crm_id) for c in customers], orphans)
        name_contracts(ctx, state, ledger)
        return cls(state=state, ledger=ledger, now=now, today=now.date(),
                   since=now - timedelta(days=m.rules.event_flag_days),
                   by_crm={fm.crm: (name, fm) for name, fm in m.write_back.items()},
                   task_rules={r.flag: r for r in m.tasks.rules})


@dataclass(frozen=True)
class CustomerView:
    """One customer as derived: facts, derived values, flags, and the write-back fields that differ."""

    cust: Customer
    key: str
    facts: Facts
    derived: Derived
    flags: list[Flag]
    sent: dict[str, Any]  # CRM field -> the value last written
    changes: dict[str, tuple[Any, str | None]]  # CRM field -> (our value, the CRM's value)


@dataclass(frozen=True)
class OutboxPlan:
    """One planned write-back or task action, as the outbox stores it."""

    kind: str  # "write", "task_open" or "task_close"
    module: str
    crm_id: str
    payload: str
    evidence: str
    marker: str | None = None


@dataclass
class Plan:
    """Everything a reconcile run would change; persisted in one transaction."""

    tally: Tally
    flag_rows: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)  # flag row ids
    tiers: list[tuple[str, str]] = field(default_factory=list)  # (customer CRM id, new tier)
    outbox: list[OutboxPlan] = field(default_factory=list)


def _event_flags(ctx: Ctx, cust: Customer, state: SyncState, since: datetime) -> list[Flag]:
    key = ctx.customer_key(cust.crm_id)
    out = []
    for item in state.items.get(cust.crm_id, []):
        if item.event in ("payment_changed", "payment_deleted") and item.event_at is not None and \
                aware(item.event_at) >= since:
            verb = "edited after posting: reversed and re-posted" if item.event == "payment_changed" else \
                "deleted after posting: reversed"
            out.append(Flag(item.event, f"ps:{item.event}:{key}:{item.crm_id}:v{item.version}",
                            f"payment {item.crm_id} ({item.amount} {item.currency}) {verb}"))
    for row in state.flags.get(key, []):
        if row.code == "manual_edit" and aware(row.opened_at) >= since:
            out.append(Flag(row.code, row.marker, row.detail))
    return out


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


def _field_changes(ctx: Ctx, inp: Inputs, key: str, d: Derived, base: list[Flag], read: dict[str, Any],
                   sent: dict[str, Any]) -> tuple[list[Flag], dict[str, tuple[Any, str | None]]]:
    """The flags with a `manual_edit` for every field changed in the CRM since we wrote it, and the fields
    whose value in the CRM is not ours."""
    new_flags: list[Flag] = []
    desired = desired_values(ctx, d, base)
    for crm_field in desired:
        last = sent.get(crm_field)
        have = norm(inp.by_crm[crm_field][1], read.get(crm_field)) if crm_field in read else last
        if last is not None and have != last:
            new_flags.append(Flag("manual_edit", f"ps:manual_edit:{key}:{crm_field}:{ctx.run_id}",
                                  f"{crm_field} was changed in the CRM from {last} to {have}"))
    flags = [*base, *new_flags]
    if new_flags:
        desired = desired_values(ctx, d, flags)
    changes: dict[str, tuple[Any, str | None]] = {}
    for crm_field, value in desired.items():
        fm = inp.by_crm[crm_field][1]
        want, last = norm(fm, value), sent.get(crm_field)
        have = norm(fm, read.get(crm_field)) if crm_field in read else last
        if want != have or (last is not None and have != last):
            changes[crm_field] = (value, have)
    return flags, changes


def derive_customer(ctx: Ctx, inp: Inputs, cust: Customer) -> CustomerView | None:
    """Derive one customer's values, flags and field changes; None: deleted, with nothing left to show."""
    m = ctx.mapping
    key = ctx.customer_key(cust.crm_id)
    facts = customer_facts(ctx, cust, inp.state, inp.ledger)
    if facts.deleted and not (facts.has_account and facts.balance != 0) and not inp.state.flags.get(key):
        return None
    d = derive(facts, m, inp.today)
    sent = inp.state.sent.get(cust.crm_id, {})
    flags = [*d.flags, *_event_flags(ctx, cust, inp.state, inp.since)]
    changes: dict[str, tuple[Any, str | None]] = {}
    if not facts.deleted:
        flags, changes = _field_changes(ctx, inp, key, d, flags, loads(cust.fields) or {}, sent)
    if changes and "reconciled_at" in m.write_back:
        changes[m.write_back["reconciled_at"].crm] = (inp.now.replace(microsecond=0), None)
    return CustomerView(cust, key, facts, d, flags, sent, changes)


def _plan_write(ctx: Ctx, inp: Inputs, view: CustomerView, plan: Plan, who: str) -> None:
    changes, key = view.changes, view.key
    evidence = {"run": ctx.run_id, "customer": key, "balance": format(view.derived.balance, "f"),
                "currency": view.facts.currency, "last_entry": inp.ledger.last_entry(key)}
    plan.outbox.append(OutboxPlan("write", ctx.mapping.customers.module, view.cust.crm_id,
                                  dumps({k: v for k, (v, _o) in changes.items()}), dumps(evidence)))
    log = ctx.report.customer(key)["fields"]
    for k, (v, old) in changes.items():
        log[k] = f"{old} -> {v}"
    ours = [k for k in changes if inp.by_crm[k][0] != "reconciled_at"]
    # Only a value prepaid-sync wrote before and now rewrites counts: filling a field it never
    # wrote (a first sync, or one a first run left unfinished) changes nothing anybody relied on.
    if any(view.sent.get(k) is not None for k in ours):
        plan.tally.changed += 1
        plan.tally.example(who, "write " + ", ".join(f"{k} {changes[k][1]} -> {changes[k][0]}" for k in ours))


def _plan_cleared(ctx: Ctx, inp: Inputs, view: CustomerView, plan: Plan, who: str,
                  open_rows: dict[str, StateRow], wanted: dict[str, Flag]) -> None:
    for marker, row in open_rows.items():
        if marker in wanted:
            continue
        plan.cleared.append(row.id)
        rule = inp.task_rules.get(row.code)
        closes = rule is not None and rule.close_when_cleared and row.task_id is not None
        if row.code not in EVENT_FLAGS:  # event flags clear by age: not counted by the guard
            plan.tally.cleared += 1
            plan.tally.closing += closes
            plan.tally.example(who, f"clear {row.code}" + (" and close its task" if closes else ""))
        if rule is not None and rule.close_when_cleared:
            plan.outbox.append(OutboxPlan("task_close", "Tasks", view.cust.crm_id, "{}",
                                          dumps({"run": ctx.run_id, "flag": row.code}), marker))
            ctx.report.customer(view.key)["tasks_close"].append(marker)


def _task(m: Mapping, inp: Inputs, view: CustomerView, flag: Flag, marker: str) -> TaskRequest | None:
    rule = inp.task_rules.get(flag.code)
    if rule is None:
        return None
    cust, d = view.cust, view.derived
    values = {"customer": view.facts.name, "customer_id": cust.crm_id, "flag": flag.code,
              "detail": flag.detail, "balance": format(d.balance, "f"), "currency": view.facts.currency or "",
              "tier": d.tier,
              "runway_days": "-" if d.runway_days is None else str(d.runway_days),
              "owner": cust.owner_name or cust.owner_id or ""}  # the name when the CRM or directory gave one
    owner = rule.assignee.removeprefix("user:") if rule.assignee != "owner" else cust.owner_id
    related = (m.customers.module, cust.crm_id)
    paid = inp.state.paid_into.get(view.key)
    if flag.code == "orphaned" and paid:  # the customer record is gone: tie it to the money
        related = (m.payments.module, paid[0].crm_id)
    return TaskRequest(marker=marker, subject=rule.subject.format_map(values)[:255],
                       description=rule.description.format_map(values),
                       due_date=inp.today + timedelta(days=rule.due_in_days), owner_id=owner,
                       related_module=related[0], related_id=related[1], priority=rule.priority)


def _plan_opened(ctx: Ctx, inp: Inputs, view: CustomerView, plan: Plan, open_rows: dict[str, StateRow],
                 wanted: dict[str, Flag]) -> None:
    for marker, flag in wanted.items():
        if marker in open_rows:
            continue
        plan.flag_rows.append({"connection": ctx.connection, "customer_id": view.key, "code": flag.code,
                               "marker": marker, "detail": flag.detail, "opened_at": inp.now,
                               "run_id": ctx.run_id})
        task = _task(ctx.mapping, inp, view, flag, marker)
        if task is None:
            continue
        plan.outbox.append(OutboxPlan("task_open", "Tasks", view.cust.crm_id, task.model_dump_json(),
                                      dumps({"run": ctx.run_id, "flag": flag.code}), marker))
        ctx.report.customer(view.key)["tasks_open"].append(f"{flag.code}: {task.subject}")


def plan_customer(ctx: Ctx, inp: Inputs, view: CustomerView, plan: Plan) -> None:
    """Add what one derived customer changes to the plan: tier, write-back, flags cleared and opened."""
    who = f"{view.facts.name} ({view.key})"
    plan.tally.customers += not view.facts.deleted
    if view.derived.tier != view.cust.tier:
        plan.tiers.append((view.cust.crm_id, view.derived.tier))
    if view.changes:
        _plan_write(ctx, inp, view, plan, who)
    open_rows = {r.marker: r for r in inp.state.flags.get(view.key, [])}
    wanted = {f.marker: f for f in view.flags}
    _plan_cleared(ctx, inp, view, plan, who, open_rows, wanted)
    _plan_opened(ctx, inp, view, plan, open_rows, wanted)


class PlanSpill:
    """The run's plan, page by page, in a temporary file (kept in memory while small): nothing is persisted
    before the mass-change guard has seen all of it, and memory stays flat however many customers."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPILL_IN_MEMORY)
        self.pages = 0

    def add(self, plan: Plan) -> None:
        """Keep one page's plan."""
        pickle.dump((plan.flag_rows, plan.cleared, plan.tiers, plan.outbox), self.file)
        self.pages += 1

    def plans(self) -> Iterator[Plan]:
        """The pages' plans in the order they were added."""
        self.file.seek(0)
        for _ in range(self.pages):
            flag_rows, cleared, tiers, outbox = pickle.load(self.file)
            yield Plan(Tally(), flag_rows, cleared, tiers, outbox)

    def close(self) -> None:
        """Drop the file."""
        self.file.close()


def persist(ctx: Ctx, plans: Iterable[Plan], now: datetime) -> tuple[int, int]:
    """Write the plan in one transaction: flags cleared and opened, tiers, and the outbox rows; answers how
    many flags it opened and cleared."""
    opened = cleared = 0
    with ctx.engine.begin() as conn:
        for plan in plans:
            _persist_page(ctx, conn, plan, now)
            opened += len(plan.flag_rows)
            cleared += len(plan.cleared)
    return opened, cleared


def _persist_page(ctx: Ctx, conn: Connection, plan: Plan, now: datetime) -> None:
    # each kind of change is one executemany, however many customers it touches
    if plan.cleared:
        conn.execute(t.flags.update().where(t.flags.c.id == bindparam("fid")).values(cleared_at=now),
                     [{"fid": fid} for fid in plan.cleared])
    if plan.flag_rows:
        conn.execute(t.flags.insert(), plan.flag_rows)
    if plan.tiers:
        conn.execute(t.customers.update().where(
            t.customers.c.connection == ctx.connection, t.customers.c.crm_id == bindparam("cid"))
            .values(tier=bindparam("new_tier")), [{"cid": c, "new_tier": tier} for c, tier in plan.tiers])
    # a newer plan replaces an unsent older one for the same record (one statement for the page's records)
    rewritten = sorted({a.crm_id for a in plan.outbox if a.kind == "write"})
    if rewritten:
        conn.execute(t.outbox.update().where(
            t.outbox.c.connection == ctx.connection, t.outbox.c.kind == "write",
            t.outbox.c.status.in_(("planned", "failed")), t.outbox.c.crm_id.in_(rewritten))
            .values(status="superseded", updated_at=now))
    if plan.outbox:
        conn.execute(t.outbox.insert(), [{"connection": ctx.connection, "run_id": ctx.run_id,
                                          "status": "planned", "attempts": 0, "created_at": now,
                                          "updated_at": now, **asdict(action)} for action in plan.outbox])


def _tally(ctx: Ctx) -> Tally:
    """The guard's tally before any customer is planned: whether anything was ever written, what is open."""
    f = t.flags.c
    with ctx.engine.connect() as conn:
        written = conn.execute(select(t.sent.c.crm_id).where(t.sent.c.connection == ctx.connection)
                               .limit(1)).first() is not None
        counted = (f.connection == ctx.connection, f.cleared_at.is_(None), f.code.not_in(EVENT_FLAGS))
        flags, tasks = conn.execute(select(func.count(), func.count(f.task_id)).where(*counted)).one()
    tally = Tally(first_sync=not written)
    tally.open_flags, tally.open_tasks = int(flags), int(tasks)
    return tally


def reconcile(ctx: Ctx) -> None:
    """Derive every customer's values and flags, a page of customers at a time; persist flags and the outbox
    plan in one transaction once the mass-change guard has seen the whole plan."""
    now = ctx.clock()
    ctx.held = held_customers(ctx)
    tally = _tally(ctx)
    orphans = connection_orphans(ctx)
    orphan_rows = orphan_customers(ctx, orphans, now)
    total = count_customers(ctx) + len(orphan_rows)
    pages: Iterator[Sequence[Customer]] = chain(
        customer_pages(ctx), (orphan_rows[i:i + PAGE] for i in range(0, len(orphan_rows), PAGE)))
    spill = PlanSpill()
    try:
        done = 0
        for page in pages:
            inp = Inputs.read(ctx, now, page, orphans)
            plan = Plan(tally=tally)
            for cust in page:
                if done % 200 == 0:
                    ctx.tick("reconcile", done, total)
                done += 1
                if cust.crm_id in ctx.held:  # a record of theirs came incomplete: leave them as they are
                    ctx.report.customers_held += 1
                    continue
                view = derive_customer(ctx, inp, cust)
                if view is not None:
                    plan_customer(ctx, inp, view, plan)
            spill.add(plan)
        enforce(ctx, tally)  # a plan over the guard's limits stops here: nothing above is kept
        opened, cleared = persist(ctx, spill.plans(), now)
    finally:
        spill.close()
    ctx.tick("reconcile", total, total)
    ctx.report.flags_opened += opened
    ctx.report.flags_cleared += cleared
