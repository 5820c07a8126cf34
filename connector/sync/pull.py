"""Pull: CRM changes since the cursor -> sync state, contract terms and idempotent ledger postings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from connector.adapters.base import EntitySpec
from connector.domain import Consumption, Contract, Customer, Deletion, Entity, Payment, PrepaymentBalance
from connector.errors import ConnectorError, InsufficientBalance, ReversalRefused, field_reason
from connector.ledger.planners import make_request
from connector.ledger.rules import REFUND_POLICIES
from connector.ledger.service import BatchOutcome
from connector.mapping.models import EntityMap, Mapping
from connector.sync import cursors, state
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.derive import ENDED
from connector.sync.holds import open_incomplete, release
from connector.timeutil import zone as time_zone

BATCH = 200
PROGRESS_EVERY = 100  # records between progress ticks while a stream is read


def specs(m: Mapping) -> dict[str, EntitySpec]:
    """Adapter EntitySpecs from the mapping; customers also read back the connector-owned fields."""
    out: dict[str, EntitySpec] = {}
    sections: list[tuple[str, Entity, EntityMap | None]] = [
        (stream.name, stream.entity, emap) for stream, emap in m.sections()]
    for name, entity, emap in sections:
        if emap is None:
            continue
        extra = [f.crm for f in emap.extra.values()]
        if name == "customers":
            extra += [f.crm for f in m.write_back.values()]
        out[name] = EntitySpec(entity=entity, module=emap.module, fields={a: f.crm for a, f in emap.fields.items()},
                               extra_fields=tuple(dict.fromkeys(extra)))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return format(Decimal(str(value)), "f")
    return value


def fingerprint(data: Any) -> str:
    """A stable digest of what matters in a record."""
    return hashlib.sha256(state.dumps(data).encode()).hexdigest()[:32]


def _picked(emap: EntityMap, attr: str, value: Any) -> Any:
    fmap = emap.fields.get(attr)
    return fmap.from_crm(value) if fmap is not None and isinstance(value, str) else value


def run_stream(ctx: Ctx, name: str, spec: EntitySpec, since: datetime | None) -> None:
    """Read one stream to its end, then save its cursor, in the CRM's time (`cursors.next_cursor`), with the
    last batch. A stored cursor ahead of the CRM's clock is pulled back first (`cursors.pull_back`); when the
    CRM's time only becomes known with this read's first answer, the check follows the read, and a cursor
    found ahead is read again from where it is pulled back to.

    Where deletions come from a separate read (Zoho `/deleted`), it is made only when due
    (`deletion_check`) and its own cursor is saved in the same transaction.
    """
    handler = {"customers": _Customers, "contracts": _Contracts, "payments": _Items,
               "consumption": _Items, "prepayment": _Native}[name](ctx, name)
    due, deletions_due = deletion_check(ctx, name, since)
    known = cursors.crm_now(ctx) is not None
    incomplete, complete = open_incomplete(ctx, spec.module), []

    def plan() -> tuple[bool, datetime | None, datetime | None]:
        checked, deletions_since = due, deletions_due
        if not checked and (ahead := cursors.deletion_cursor_ahead(ctx, name)) is not None:
            checked, deletions_since = True, ahead  # saved ahead of the CRM: check now, from where it comes back to
        return checked, *cursors.pull_back(ctx, name, since, deletions_since)

    checked, read_since, deletions_since = plan()
    count, newest = _read(ctx, name, spec, handler, read_since, deletions_since, incomplete, complete)
    if not known:  # the CRM's time is known since this read's first answer: were the cursors ahead of it?
        again = plan()
        if again[1:] != (read_since, deletions_since):
            checked, read_since, deletions_since = again
            more, newer = _read(ctx, name, spec, handler, read_since, deletions_since, incomplete, complete, count)
            count, newest = count + more, max((at for at in (newest, newer) if at is not None), default=None)
    handler.finish()  # post what is still pending before the cursor may pass it
    cursor = cursors.next_cursor(ctx, newest)
    with ctx.engine.begin() as conn:
        handler.flush(conn)
        release(conn, ctx, complete)
        if cursor is not None:
            state.set_cursor(conn, ctx.connection, name, cursor, ctx.run_id)
            if checked:
                state.set_cursor(conn, ctx.connection, state.deletion_stream(name), cursor, ctx.run_id)
    ctx.report.pulled[name] = count
    ctx.tick(f"pull {name}", count, count)


def _read(ctx: Ctx, name: str, spec: EntitySpec, handler: _Handler, since: datetime | None,
          deletions_since: datetime | None, incomplete: set[str], complete: list[str],
          done: int = 0) -> tuple[int, datetime | None]:
    """Hand every changed record (and deletion) to `handler`; how many, and the newest time the CRM gave them.

    Records in `incomplete` (held for a missing field) that come again are listed in `complete`."""
    overlap = ctx.overlap if since is not None or deletions_since is not None else timedelta(0)
    count, newest = 0, None
    for item in ctx.adapter.stream(spec, since=since, overlap=overlap, deletions_since=deletions_since):
        count += 1
        at = item.deleted_at if isinstance(item, Deletion) else item.modified_at
        if at is not None and (newest is None or at > newest):
            newest = at
        if item.key in incomplete:
            complete.append(item.key)
        handler.take(item)
        if (done + count) % PROGRESS_EVERY == 0:
            ctx.tick(f"pull {name}", done + count)
    return count, newest


def deletion_check(ctx: Ctx, name: str, since: datetime | None) -> tuple[bool, datetime | None]:
    """Whether this run checks the stream's deletions (and saves its deletion cursor), and from when.

    Only adapters with a separate deletion read (`deletion_check_interval`) have a deletion cursor.
    It is due when the last check is at least the interval old (0: every run), on a full run, or when
    there is none yet; the read starts at the last check (the adapter subtracts the overlap), or at
    the stream's cursor when no check was recorded. A first pull of a stream has nothing to delete:
    it only starts the deletion cursor.
    """
    interval = ctx.adapter.deletion_check_interval
    if interval is None:
        return False, None
    last = state.get_cursor(ctx.engine, ctx.connection, state.deletion_stream(name))
    if last is None:
        last = since if since is not None else state.get_cursor(ctx.engine, ctx.connection, name)
        return True, last
    if since is None or (cursors.crm_now(ctx) or ctx.started_at) - last >= interval:  # both in the CRM's time
        return True, last
    return False, None


class _Handler:
    def __init__(self, ctx: Ctx, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.rows: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def take(self, item: Any) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Process what is buffered (in its own transactions); the stream's last flush follows."""

    def queue(self, keys: dict[str, Any], values: dict[str, Any]) -> None:
        self.rows.append((keys, values))
        if len(self.rows) >= BATCH:
            with self.ctx.engine.begin() as conn:
                self.flush(conn)

    def flush(self, conn: Connection) -> None:
        table = t.customers if self.name == "customers" else t.contracts if self.name == "contracts" else t.items
        state.upsert_many(conn, table, [{**keys, **values} for keys, values in self.rows])
        self.rows = []


class _Customers(_Handler):
    def take(self, item: Any) -> None:
        ctx = self.ctx
        keys = {"connection": ctx.connection, "crm_id": item.crm_id}
        if isinstance(item, Deletion):
            self.queue(keys, {"deleted_at": item.deleted_at})
            return
        assert isinstance(item, Customer)
        self.queue(keys, {"name": item.name, "owner_id": item.owner_id, "owner_name": item.owner_name,
                          "currency": item.currency,
                          "fields": state.dumps(_plain(item.fields)), "deleted_at": None,
                          "modified_at": item.modified_at})


class _Native(_Handler):
    """CRM-native prepayment balances (Fxiaoke CustomerAccountObj): stored as `prepayment` items, never posted."""

    def take(self, item: Any) -> None:
        keys = {"connection": self.ctx.connection, "kind": "prepayment", "crm_id": item.crm_id}
        if isinstance(item, Deletion):
            self.queue(keys, {"status": "deleted", "modified_at": item.deleted_at, "fingerprint": "", "payload": "{}"})
            return
        assert isinstance(item, PrepaymentBalance)
        currency = item.currency or self.ctx.mapping.currency
        self.queue(keys, {"customer_id": item.customer_id, "currency": currency, "amount": format(item.balance, "f"),
                          "fingerprint": fingerprint([item.customer_id, currency, format(item.balance, "f")]),
                          "status": "native", "payload": item.model_dump_json(), "modified_at": item.modified_at})


class _Contracts(_Handler):
    """Contracts set terms (contract and customer level), a page at a time in one transaction."""

    def __init__(self, ctx: Ctx, name: str) -> None:
        super().__init__(ctx, name)
        self.pending: list[Contract] = []

    def take(self, item: Any) -> None:
        ctx = self.ctx
        if isinstance(item, Deletion):
            self.finish()
            self.queue({"connection": ctx.connection, "crm_id": item.crm_id},
                       {"deleted_at": item.deleted_at, "payload": "{}"})
            return
        assert isinstance(item, Contract)
        if any(p.crm_id == item.crm_id for p in self.pending):
            self.finish()
        self.pending.append(item)
        if len(self.pending) >= BATCH:
            self.finish()

    def finish(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
        ctx = self.ctx
        emap = ctx.mapping.contracts
        c = t.contracts.c
        with ctx.engine.connect() as conn:
            olds = {r.crm_id: r for r in conn.execute(select(c.crm_id, c.payload, c.deleted_at).where(
                c.connection == ctx.connection, c.crm_id.in_([i.crm_id for i in items])))}
        currencies = _customer_currencies(ctx, [i.customer_id for i in items if not i.currency and i.customer_id])
        todo: list[tuple[Contract, dict[str, Any], str]] = []
        terms_items: list[dict[str, Any]] = []
        for item in items:
            payload = {"crm_id": item.crm_id, "name": item.name, "prepay_amount": item.prepay_amount,
                       "due_date": item.due_date, "valid_from": item.valid_from, "valid_until": item.valid_until,
                       "refund_policy": _picked(emap, "refund_policy", item.refund_policy),
                       "refund_fee_pct": item.refund_fee_pct, "credit_limit": item.credit_limit,
                       "low_balance_threshold": item.low_balance_threshold,
                       "status": _picked(emap, "status", item.status), "customer_id": item.customer_id}
            old = olds.get(item.crm_id)
            if old is not None and old.deleted_at is None and \
                    fingerprint(state.loads(old.payload)) == fingerprint(payload):
                continue  # unchanged (an overlap re-read or an echo)
            if not item.customer_id:
                ctx.error(item.key, emap.fields["customer_id"].crm, "pull", "contract has no customer")
                continue
            customer = ctx.customer_key(item.customer_id)
            currency = item.currency or currencies.get(item.customer_id) or ctx.mapping.currency
            if not currency:
                ctx.error(item.key, "currency", "pull", "no currency on the contract, its customer or the mapping")
                continue
            policy = payload["refund_policy"] if payload["refund_policy"] in REFUND_POLICIES else "full"
            # The customer-level row holds what is per customer (refund policy, credit line, threshold: the
            # last contract pulled sets them); the contract's amount, due date and validity live on its own
            # row only, so a reader walking the terms sees each contract once (migration 0004).
            terms = dict(customer=customer, currency=currency, refund_policy=policy,
                         refund_fee_pct=item.refund_fee_pct or 0, credit_limit=item.credit_limit or 0,
                         low_balance_threshold=item.low_balance_threshold)
            terms_items += [{**terms, "contract_ref": item.key, "agreed_amount": item.prepay_amount,
                             "due_date": item.due_date, "valid_from": item.valid_from,
                             "valid_until": item.valid_until, "active": payload["status"] not in ENDED}, terms]
            todo.append((item, payload, currency))
        if not todo:
            return
        now = ctx.clock()

        def hook(conn: Connection, outcomes: list[ConnectorError | None]) -> None:
            # The contract's sync state commits with its terms.
            done = [(item, payload, currency) for n, (item, payload, currency) in enumerate(todo)
                    if outcomes[2 * n] is None and outcomes[2 * n + 1] is None]
            state.resolve_errors(conn, ctx.connection, [item.key for item, _, _ in done], "terms", now)
            state.upsert_many(conn, t.contracts, [
                {"connection": ctx.connection, "crm_id": item.crm_id, "customer_id": item.customer_id,
                 "currency": currency, "payload": state.dumps(payload), "deleted_at": None,
                 "modified_at": item.modified_at} for item, payload, currency in done])

        outcomes = ctx.ledger.set_terms_many(terms_items, hook=hook)
        for n, (item, _, _) in enumerate(todo):
            exc = outcomes[2 * n] or outcomes[2 * n + 1]
            if exc is not None:
                ctx.error(item.key, str(exc.details.get("field", "")), "terms", field_reason(exc))
            else:
                ctx.report.terms_set += 1


def _customer_currencies(ctx: Ctx, crm_ids: list[str]) -> dict[str, str]:
    """Currencies of many pulled customers at once."""
    if not crm_ids:
        return {}
    c = t.customers.c
    with ctx.engine.connect() as conn:
        return {r.crm_id: r.currency for r in conn.execute(select(c.crm_id, c.currency).where(
            c.connection == ctx.connection, c.crm_id.in_(sorted(set(crm_ids))))) if r.currency}


def _customer_currency(ctx: Ctx, crm_id: str) -> str | None:
    with ctx.engine.connect() as conn:
        return conn.execute(select(t.customers.c.currency).where(
            t.customers.c.connection == ctx.connection, t.customers.c.crm_id == crm_id)).scalar()


def _when(value: datetime | date | None, zone: str | None, now: datetime) -> datetime | None:
    """Business time of a record: a bare date is the start of that day in the field's zone; never after now."""
    if value is None:
        return None
    if isinstance(value, datetime):
        at = value.astimezone(UTC)
    else:
        tz = time_zone(zone, default="UTC")
        at = datetime(value.year, value.month, value.day, tzinfo=tz).astimezone(UTC)
    return min(at, now)


class _Items(_Handler):
    """Payments (-> deposits) and consumption (-> consume); edits reverse and re-post; deletes reverse.

    Items are taken a page (`BATCH`) at a time: their sync state is read in one query and their
    postings go to the ledger in one transaction, with the items' state (`Poster`).
    """

    def __init__(self, ctx: Ctx, name: str) -> None:
        super().__init__(ctx, name)
        self.kind = "payment" if name == "payments" else "consumption"
        self.pending: dict[str, Any] = {}

    def take(self, item: Any) -> None:
        if item.crm_id in self.pending:
            self.finish()
        self.pending[item.crm_id] = item
        if len(self.pending) >= BATCH:
            self.finish()

    def finish(self) -> None:
        items, self.pending = list(self.pending.values()), {}
        if not items:
            return
        ctx, kind = self.ctx, self.kind
        c = t.items.c
        with ctx.engine.connect() as conn:
            olds = {r.crm_id: r for r in conn.execute(select(t.items).where(
                c.connection == ctx.connection, c.kind == kind, c.crm_id.in_([i.crm_id for i in items])))}
        poster = Poster(ctx)
        poster.prefetch(items)
        for item in items:
            old = olds.get(item.crm_id)
            if isinstance(item, Deletion):
                if old is not None and old.status != "deleted":
                    poster.flush()  # keep the ledger's order of events
                    apply_deletion(ctx, kind, old, item.key)
                continue
            apply_item(ctx, kind, item, old, poster)
        poster.flush()


class _Pending:
    __slots__ = ("kind", "req", "keys", "row", "record", "fld", "at_fld", "zone", "customer", "label", "new")

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


class Poster:
    """Collects postings (and state-only item rows) and sends them as one ledger batch.

    Each posting's item state row is written in the batch's transaction (`Ledger.post_batch`
    hook), so a posting and the state that says it was made commit together or not at all.
    """

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.pending: list[_Pending] = []
        self.rows: list[tuple[dict[str, Any], bool]] = []  # state-only item rows (keys and values), new
        self.currencies: dict[str, str | None] = {}
        self.ends: dict[str, datetime | None] = {}  # contract id -> validity end (lot_expiry: valid_until)

    def prefetch(self, items: Iterable[Any]) -> None:
        """Read the currencies of the customers of `items` that carry none, in one query."""
        ids = {i.customer_id for i in items if not isinstance(i, Deletion) and not i.currency and i.customer_id}
        self.currencies |= dict.fromkeys(ids, None) | _customer_currencies(self.ctx, list(ids))

    def lot_expiry(self, item: Payment, at: datetime) -> datetime | None:
        """The expiry of the lot a payment funds: with mapping `lot_expiry: valid_until`, the end of its
        contract's last valid day (in that field's zone); none without a contract or validity end, or
        when the contract had already ended when the money arrived (it stays spendable; `expired` says so)."""
        m = self.ctx.mapping
        if m.lot_expiry != "valid_until" or not item.contract_id:
            return None
        if item.contract_id not in self.ends:
            c = t.contracts.c
            with self.ctx.engine.connect() as conn:
                payload = conn.execute(select(c.payload).where(c.connection == self.ctx.connection,
                                                               c.crm_id == item.contract_id,
                                                               c.deleted_at.is_(None))).scalar()
            until = (state.loads(payload) or {}).get("valid_until") if payload else None
            fmap = m.contracts.fields.get("valid_until")
            zone = time_zone(fmap.timezone if fmap is not None else None, default="UTC")
            end = None
            if until:
                day = date.fromisoformat(str(until)[:10]) + timedelta(days=1)
                end = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
            self.ends[item.contract_id] = end
        end = self.ends[item.contract_id]
        return end if end is not None and end > at else None

    def currency_of(self, crm_id: str) -> str | None:
        """A customer's currency (prefetched for the page, else read)."""
        if crm_id in self.currencies:
            return self.currencies[crm_id]
        return _customer_currency(self.ctx, crm_id)

    def flush(self) -> None:
        """Post everything collected in one transaction, then record the refusals (run goes on)."""
        pending, rows = self.pending, self.rows
        self.pending, self.rows = [], []
        ctx = self.ctx
        if not pending:
            if rows:
                with ctx.engine.begin() as conn:
                    _write_rows(conn, rows)
            return
        now = ctx.clock()

        def hook(conn: Connection, outcomes: list[BatchOutcome]) -> None:
            done = [(p, o.result) for p, o in zip(pending, outcomes, strict=True) if o.result is not None]
            posted = [({**p.keys, **p.row, "status": "posted", "entry_ids": state.dumps(res.entry_ids)}, p.new)
                      for p, res in done]
            _write_rows(conn, rows + posted)
            state.resolve_errors(conn, ctx.connection, [p.record for p, _ in done], "post", now)

        outcomes = ctx.ledger.post_batch([p.req for p in pending], hook=hook)
        for p, o in zip(pending, outcomes, strict=True):
            if o.error is not None:
                _fail(ctx, p.keys, p.row, p.record, *_refusal(ctx, p, o.error))
            elif o.result is not None and o.result.created:
                if p.kind == "payment":
                    ctx.report.deposits_posted += 1
                else:
                    ctx.report.consumptions_posted += 1
                ctx.report.customer(p.customer)["postings"].append(p.label)


def _refusal(ctx: Ctx, p: _Pending, error: ConnectorError) -> tuple[str, str]:
    """The field to name and the reason to record for a refused posting.

    A consumption refused for want of money while the customer has a deposit dated after it was most
    likely entered with the wrong date (a lot cannot be spent before it takes effect): say so, with
    both dates, and name the date field.
    """
    if p.kind != "consumption" or not isinstance(error, InsufficientBalance):
        return p.fld, error.message
    at: datetime = p.row["at"]
    i = t.items.c
    with ctx.engine.connect() as conn:
        deposits = list(conn.execute(select(i.at).where(
            i.connection == ctx.connection, i.kind == "payment", i.status == "posted",
            i.customer_id == p.row["customer_id"], i.currency == p.row["currency"]).order_by(i.at)).scalars())
    later = [d for d in deposits if d is not None and d > at]
    if not later:
        return p.fld, error.message  # no later deposit would fund it: an amount or a payment is wrong
    paid_at = ctx.mapping.payments.fields.get("paid_at")
    first = _local(later[0], paid_at.timezone if paid_at else None)
    if len(later) == len(deposits):
        return p.at_fld, (f"consumption dated {_local(at, p.zone)} is before any deposit available then "
                          f"(first deposit {first}); correct the date in the CRM")
    details = error.details
    cur = p.row["currency"]
    return p.at_fld, (f"consumption of {details.get('amount')} {cur} dated {_local(at, p.zone)}: only "
                      f"{details.get('available')} {cur} was available then and the next deposit is dated "
                      f"{first}; correct the date in the CRM if it was used later, or record the payment that "
                      "funded it")


def _local(at: datetime, zone: str | None) -> str:
    """A time as the CRM user sees it: the date alone at midnight, else date, time and zone."""
    local = at.astimezone(time_zone(zone, default="UTC"))
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{local:%Y-%m-%d}"
    return f"{local:%Y-%m-%d %H:%M} {zone or 'UTC'}"


def _write_rows(conn: Connection, rows: list[tuple[dict[str, Any], bool]]) -> None:
    """Item state rows: plain inserts for items seen the first time, upserts for the others."""
    new = [row for row, is_new in rows if is_new]
    if new:
        conn.execute(t.items.insert(), new)
    state.upsert_many(conn, t.items, [row for row, is_new in rows if not is_new])


def _postable(m: Mapping, kind: str, item: Payment | Consumption) -> bool:
    statuses = m.payments.post_statuses if kind == "payment" else ()
    return not statuses or (isinstance(item, Payment) and item.status in statuses)


def apply_item(ctx: Ctx, kind: str, item: Payment | Consumption, old: Any, poster: Poster | None = None) -> None:
    """Post a new or edited payment/consumption exactly once (retried from state on later runs).

    With `poster` the posting joins its batch (sent by `poster.flush()`); without, it is sent now.
    """
    if poster is None:
        poster = Poster(ctx)
        apply_item(ctx, kind, item, old, poster)
        poster.flush()
        return
    m = ctx.mapping
    emap = m.payments if kind == "payment" else m.consumption
    assert emap is not None
    if not item.customer_id and kind != "payment":  # a payment without one goes to a holding account (orphans)
        ctx.error(item.key, emap.fields["customer_id"].crm, "post", f"{kind} has no customer")
        return
    customer = ctx.account_of(kind, item.customer_id, item.crm_id)
    currency = item.currency or (poster.currency_of(item.customer_id) if item.customer_id else None) or m.currency
    when_field = emap.fields.get("paid_at" if kind == "payment" else "used_at")
    at = _when(item.paid_at if isinstance(item, Payment) else item.used_at,
               when_field.timezone if when_field else None, ctx.clock()) or item.modified_at
    postable = _postable(m, kind, item)
    facts = {"customer": customer, "currency": currency, "amount": item.amount, "at": at, "postable": postable,
             "contract": getattr(item, "contract_id", None)}
    expires = poster.lot_expiry(item, at) if isinstance(item, Payment) else None
    if expires is not None:  # only then: payments posted without an expiry keep their earlier digests
        facts["expires"] = expires
    digest = fingerprint(facts)
    if old is not None and old.fingerprint == digest and old.status in ("posted", "skipped"):
        return  # seen exactly like this before: overlap re-read or echo
    version = (old.version + 1) if old is not None else 1
    event = None
    refusal: ConnectorError | None = None
    if old is not None and old.status == "posted":
        poster.flush()  # the ledger sees events in the CRM's order
        refusal = reverse_entries(ctx, old, f"#v{old.version}:edit", "edited in the CRM")
        if refusal is not None and not (kind == "payment" and spent_lot(refusal) and old.customer_id == item.customer_id
                                        and old.currency == currency):
            ctx.error(_item_key(ctx, old), "amount", "reverse", refusal.message)
            return
        event = "payment_changed" if kind == "payment" else None
    row = {"customer_id": item.customer_id, "contract_id": getattr(item, "contract_id", None), "currency": currency,
           "amount": format(item.amount, "f"), "at": at, "fingerprint": digest, "version": version,
           "payload": item.model_dump_json(), "modified_at": item.modified_at}
    if event:
        row.update(event=event, event_at=ctx.clock())
    keys = {"connection": ctx.connection, "kind": kind, "crm_id": item.crm_id}
    if refusal is not None:  # its deposit is partly spent: post the difference instead of re-posting
        new_amount = item.amount if postable else Decimal(0)
        post_difference(ctx, old, keys, {**row, "amount": format(new_amount, "f")}, customer,
                        new_amount - Decimal(old.amount), f"{item.key}#v{version}:difference", at,
                        f"edited in the CRM from {old.amount} to {new_amount} {currency}")
        return
    if not postable:
        poster.rows.append(({**keys, **row, "status": "skipped", "entry_ids": "[]"}, old is None))
        return
    if not currency:
        _fail(ctx, keys, row, item.key, "currency", "no currency on the record, its customer or the mapping")
        return
    op = "deposit" if kind == "payment" else "consume"
    fld = emap.fields["amount"].crm
    try:
        req = make_request(op, customer, item.amount, currency, f"{item.key}#v{version}", effective_at=at,
                           expires_at=expires, source=(m.crm, item.key), memo=f"{item.module} {item.crm_id}")
    except ConnectorError as exc:
        _fail(ctx, keys, row, item.key, fld, exc.message)
        return
    poster.pending.append(_Pending(kind=kind, req=req, keys=keys, row=row, record=item.key, fld=fld,
                                  at_fld=when_field.crm if when_field else fld,
                                  zone=when_field.timezone if when_field else None, customer=customer,
                                  label=f"{op} {item.amount} {currency} ({item.key} v{version})", new=old is None))


def _fail(ctx: Ctx, keys: dict[str, Any], row: dict[str, Any], record: str, fld: str, reason: str) -> None:
    with ctx.engine.begin() as conn:
        state.upsert(conn, t.items, keys, {**row, "status": "error", "entry_ids": "[]"})
    ctx.error(record, fld, "post", reason)


def reverse_entries(ctx: Ctx, old: Any, suffix: str, why: str) -> ConnectorError | None:
    """Reverse every entry a posted item wrote (idempotent keys); the ledger's refusal, if it refused.

    The deposit comes first in `entry_ids`, so a refusal (its lot partly spent) reverses nothing."""
    for entry_id in state.loads(old.entry_ids) or []:
        try:
            result = ctx.ledger.reverse(entry_id, f"{_item_key(ctx, old)}{suffix}:{entry_id}", memo=why)
        except ConnectorError as exc:
            return exc
        if result.created:
            ctx.report.reversals_posted += 1
            ctx.report.customer(ctx.account_of(old.kind, old.customer_id, old.crm_id))["postings"].append(
                f"reverse entry {entry_id} ({why})")
    return None


def spent_lot(refusal: ConnectorError) -> bool:
    """The ledger refused a reversal because the deposit's lot has been drawn on."""
    return isinstance(refusal, ReversalRefused) and "lot" in refusal.details


def post_difference(ctx: Ctx, old: Any, keys: dict[str, Any], row: dict[str, Any], customer: str, delta: Decimal,
                    key: str, at: datetime, why: str) -> None:
    """A posted payment whose deposit is partly spent changed (or went): post the difference as a new entry.

    The deposit can't be reversed once money was drawn from it, and nothing is rewritten: a rise becomes
    a further deposit dated like the payment, a fall or a deletion a negative adjustment now, as far as
    the balance (and credit line) still holds it; a part already spent is recorded as an error naming
    the amount, for a person to collect (resolved when a later edit leaves no shortfall). The item keeps every entry it wrote, so a later edit or
    reversal sees them all."""
    record = _item_key(ctx, old)
    ids = list(state.loads(old.entry_ids) or [])
    currency = old.currency
    memo = f"{record} {why}; its deposit was partly spent, so the difference is posted"
    short = False
    if delta < 0:  # take back what is still there; what was spent can't be, and is said so
        views = ctx.ledger.balance(customer, currency)
        available = views[0].available if views and views[0].available is not None else Decimal(0)
        take = min(-delta, max(available, Decimal(0)))
        short = take < -delta
        if short:
            ctx.error(record, "amount", "correction",
                      f"{why}: {-delta - take} {currency} of the difference was already spent and can't be taken "
                      f"back from the balance (took back {take}); collect it from the customer or restore the payment")
        delta = -take
    if delta:
        try:
            if delta > 0:
                req = make_request("deposit", customer, delta, currency, key, effective_at=at,
                                   source=(ctx.mapping.crm, record), memo=memo)
            else:
                req = make_request("adjust", customer, delta, currency, key, source=(ctx.mapping.crm, record),
                                   memo=memo)
            result = ctx.ledger.post(req)
        except ConnectorError as exc:
            ctx.error(record, "amount", "post", field_reason(exc))
            return
        ids += [i for i in result.entry_ids if i not in ids]
        if result.created:
            if delta > 0:
                ctx.report.deposits_posted += 1
            ctx.report.customer(customer)["postings"].append(f"{'deposit' if delta > 0 else 'adjust'} {delta} "
                                                             f"{currency} ({why})")
    with ctx.engine.begin() as conn:
        state.upsert(conn, t.items, keys, {**row, "status": row.get("status", "posted"),
                                           "entry_ids": state.dumps(ids)})
        for stage in ("post", "reverse") if short else ("post", "reverse", "correction"):
            state.resolve_error(conn, ctx.connection, record, stage, ctx.clock())


def _item_key(ctx: Ctx, old: Any) -> str:
    emap = ctx.mapping.payments if old.kind == "payment" else ctx.mapping.consumption
    assert emap is not None
    return f"{ctx.mapping.crm}:{emap.module}:{old.crm_id}"


def apply_deletion(ctx: Ctx, kind: str, old: Any, record: str) -> None:
    """A deleted payment/consumption: reverse what it posted and raise an event flag."""
    if old.status == "posted":
        refusal = reverse_entries(ctx, old, f"#v{old.version}:delete", "deleted in the CRM")
        if refusal is not None and old.kind == "payment" and spent_lot(refusal):
            keys = {"connection": ctx.connection, "kind": kind, "crm_id": old.crm_id}
            post_difference(ctx, old, keys, {"status": "deleted", "event": "payment_deleted", "event_at": ctx.clock(),
                                             "fingerprint": old.fingerprint, "payload": old.payload},
                            ctx.account_of(old.kind, old.customer_id, old.crm_id), -Decimal(old.amount),
                            f"{record}#v{old.version}:deleted", ctx.clock(), "deleted in the CRM")
            return
        if refusal is not None:
            ctx.error(_item_key(ctx, old), "amount", "reverse", refusal.message)
            return
    with ctx.engine.begin() as conn:
        conn.execute(t.items.update().where(t.items.c.connection == ctx.connection, t.items.c.kind == kind,
                                            t.items.c.crm_id == old.crm_id)
                     .values(status="deleted", event="payment_deleted" if old.status == "posted" else None,
                             event_at=ctx.clock()))
        state.resolve_error(conn, ctx.connection, record, "post", ctx.clock())


def retry_failed(ctx: Ctx, kinds: Iterable[str]) -> None:
    """Re-try items whose posting failed on an earlier run, from their stored payload (no CRM reads).

    Items already tried (and refused) by this run's pull are left for the next run: nothing they
    depend on has changed since, and a second try would only report the same error twice.
    """
    e = t.errors.c
    for kind in kinds:
        with ctx.engine.connect() as conn:
            rows = conn.execute(select(t.items).where(t.items.c.connection == ctx.connection, t.items.c.kind == kind,
                                                      t.items.c.status == "error")).all()
            tried = set(conn.execute(select(e.record).where(
                e.connection == ctx.connection, e.stage == "post", e.run_id == ctx.run_id,
                e.resolved_at.is_(None))).scalars())
        rows = [row for row in rows if _item_key(ctx, row) not in tried]
        model = Payment if kind == "payment" else Consumption
        poster = Poster(ctx)
        for start in range(0, len(rows), BATCH):
            page = rows[start:start + BATCH]
            items = [model.model_validate_json(row.payload) for row in page]
            poster.prefetch(items)
            for row, item in zip(page, items, strict=True):
                apply_item(ctx, kind, item, row, poster)
                if len(poster.pending) >= BATCH:
                    poster.flush()
        poster.flush()
