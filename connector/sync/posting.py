"""The posting policy: a new payment or consumption is posted once, an edited one reversed and re-posted, a
deleted one reversed; a payment whose deposit is partly spent gets the difference posted instead.

Every posting has an idempotent key (record, version), and a failed one is tried again from its stored
payload on later runs (`retry_failed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, select

from connector.db.rows import dumps, fingerprint, loads, upsert
from connector.domain import Consumption, Payment
from connector.errors import ConnectorError, ReversalRefused, field_reason
from connector.ledger.planners import make_request
from connector.mapping.models import EntityMap, FieldMap
from connector.sync import messages
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.poster import BATCH, ItemRow, PendingPosting, Poster, fail
from connector.sync.record_errors import resolve_error
from connector.timeutil import zone as time_zone

StoredItem = Row[Any]  # an item's sync-state row (`sync.tables.items`)


@dataclass(frozen=True)
class ItemFacts:
    """What an item's posting depends on; their fingerprint tells an edit from a re-read."""

    customer: str  # the ledger customer key
    currency: str | None
    amount: Decimal
    at: datetime  # business time
    postable: bool  # the mapping's post statuses allow it
    contract: str | None
    expires: datetime | None  # the lot's expiry (payments with `lot_expiry: valid_until`)

    def fingerprint(self) -> str:
        """The digest stored with the item."""
        facts: dict[str, Any] = {"customer": self.customer, "currency": self.currency, "amount": self.amount,
                                 "at": self.at, "postable": self.postable, "contract": self.contract}
        # only with an expiry: payments posted without one keep their earlier digests
        if self.expires is not None:
            facts["expires"] = self.expires
        return fingerprint(facts)


def business_time(value: datetime | date | None, zone: str | None, now: datetime) -> datetime | None:
    """Business time of a record: a bare date is the start of that day in the field's zone; never after
    now."""
    if value is None:
        return None
    if isinstance(value, datetime):
        at = value.astimezone(UTC)
    else:
        tz = time_zone(zone, default="UTC")
        at = datetime(value.year, value.month, value.day, tzinfo=tz).astimezone(UTC)
    return min(at, now)


def item_key(ctx: Ctx, old: StoredItem) -> str:
    """The record key of a stored item, e.g. `crm:Module:id`."""
    emap = ctx.mapping.payments if old.kind == "payment" else ctx.mapping.consumption
    assert emap is not None
    return f"{ctx.mapping.crm}:{emap.module}:{old.crm_id}"


def _facts(ctx: Ctx, kind: str, item: Payment | Consumption, poster: Poster,
           when: FieldMap | None) -> ItemFacts:
    m = ctx.mapping
    # the customer's own currency is looked up only for an item that names none
    own = poster.currency_of(item.customer_id) if item.customer_id and not item.currency else None
    currency = item.currency or own or m.currency
    at = business_time(item.paid_at if isinstance(item, Payment) else item.used_at,
                       when.timezone if when else None, ctx.clock()) or item.modified_at
    statuses = m.payments.post_statuses if kind == "payment" else ()
    postable = not statuses or (isinstance(item, Payment) and item.status in statuses)
    return ItemFacts(customer=ctx.account_of(kind, item.customer_id, item.crm_id), currency=currency,
                     amount=item.amount, at=at, postable=postable,
                     contract=getattr(item, "contract_id", None),
                     expires=poster.lot_expiry(item, at) if isinstance(item, Payment) else None)


def _difference_instead(kind: str, refusal: ConnectorError, old: StoredItem, item: Payment | Consumption,
                        currency: str | None) -> bool:
    """An edited payment whose deposit is partly spent (same customer and currency) posts the difference."""
    return (kind == "payment" and spent_lot(refusal) and old.customer_id == item.customer_id
            and old.currency == currency)


def apply_item(ctx: Ctx, kind: str, item: Payment | Consumption, old: StoredItem | None,
               poster: Poster | None = None) -> None:
    """Post a new or edited payment/consumption exactly once (retried from state on later runs).

    With `poster` the posting joins its batch (sent by `poster.flush()`); without, it is sent now.
    """
    if poster is None:
        poster = Poster(ctx)
        apply_item(ctx, kind, item, old, poster)
        poster.flush()
        return
    emap = ctx.mapping.payments if kind == "payment" else ctx.mapping.consumption
    assert emap is not None
    # a payment without a customer goes to a holding account (orphans); a consumption can't
    if not item.customer_id and kind != "payment":
        ctx.error(item.key, emap.fields["customer_id"].crm, "post", messages.without_customer(kind))
        return
    when = emap.fields.get("paid_at" if kind == "payment" else "used_at")
    facts = _facts(ctx, kind, item, poster, when)
    digest = facts.fingerprint()
    if old is not None and old.fingerprint == digest and old.status in ("posted", "skipped"):
        return  # seen exactly like this before: overlap re-read or echo
    version = (old.version + 1) if old is not None else 1
    event = None
    refusal: ConnectorError | None = None
    if old is not None and old.status == "posted":
        poster.flush()  # the ledger sees events in the CRM's order
        refusal = reverse_entries(ctx, old, f"#v{old.version}:edit", messages.EDITED)
        if refusal is not None and not _difference_instead(kind, refusal, old, item, facts.currency):
            ctx.error(item_key(ctx, old), "amount", "reverse", refusal.message)
            return
        event = "payment_changed" if kind == "payment" else None
    row: dict[str, Any] = {
        "customer_id": item.customer_id, "contract_id": facts.contract, "currency": facts.currency,
        "amount": format(item.amount, "f"), "at": facts.at, "fingerprint": digest, "version": version,
        "payload": item.model_dump_json(), "modified_at": item.modified_at}
    if event:
        row.update(event=event, event_at=ctx.clock())
    keys = {"connection": ctx.connection, "kind": kind, "crm_id": item.crm_id}
    if refusal is not None and old is not None:  # its deposit is partly spent: post the difference instead
        new_amount = item.amount if facts.postable else Decimal(0)
        post_difference(ctx, old, keys, {**row, "amount": format(new_amount, "f")}, facts.customer,
                        new_amount - Decimal(old.amount), f"{item.key}#v{version}:difference", facts.at,
                        messages.edited_amount(old.amount, new_amount, facts.currency))
        return
    if not facts.postable:
        poster.rows.append(ItemRow({**keys, **row, "status": "skipped", "entry_ids": "[]"}, old is None))
        return
    _queue(ctx, kind, item, emap, when, facts, keys, row, version, poster, new=old is None)


def _queue(ctx: Ctx, kind: str, item: Payment | Consumption, emap: EntityMap, when: FieldMap | None,
           facts: ItemFacts, keys: dict[str, Any], row: dict[str, Any], version: int, poster: Poster,
           *, new: bool) -> None:
    """Add the item's posting to the poster's batch (or record why it can't be posted)."""
    if not facts.currency:
        fail(ctx, keys, row, item.key, "currency", messages.RECORD_WITHOUT_CURRENCY)
        return
    op = "deposit" if kind == "payment" else "consume"
    fld = emap.fields["amount"].crm
    try:
        req = make_request(op, facts.customer, item.amount, facts.currency, f"{item.key}#v{version}",
                           effective_at=facts.at, expires_at=facts.expires,
                           source=(ctx.mapping.crm, item.key), memo=f"{item.module} {item.crm_id}")
    except ConnectorError as exc:
        fail(ctx, keys, row, item.key, fld, exc.message)
        return
    poster.pending.append(PendingPosting(
        kind=kind, request=req, keys=keys, row=row, record=item.key, amount_field=fld,
        date_field=when.crm if when else fld, zone=when.timezone if when else None, customer=facts.customer,
        label=f"{op} {item.amount} {facts.currency} ({item.key} v{version})", new=new))


def reverse_entries(ctx: Ctx, old: StoredItem, suffix: str, why: str) -> ConnectorError | None:
    """Reverse every entry a posted item wrote (idempotent keys); the ledger's refusal, if it refused.

    The deposit comes first in `entry_ids`, so a refusal (its lot partly spent) reverses nothing."""
    for entry_id in loads(old.entry_ids) or []:
        try:
            result = ctx.ledger.reverse(entry_id, f"{item_key(ctx, old)}{suffix}:{entry_id}", memo=why)
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


def post_difference(ctx: Ctx, old: StoredItem, keys: dict[str, Any], row: dict[str, Any], customer: str,
                    delta: Decimal, key: str, at: datetime, why: str) -> None:
    """A posted payment whose deposit is partly spent changed (or went): post the difference as a new entry.

    The deposit can't be reversed once money was drawn from it, and nothing is rewritten: a rise becomes
    a further deposit dated like the payment, a fall or a deletion a negative adjustment now, as far as
    the balance (and credit line) still holds it; a part already spent is recorded as an error naming
    the amount, for a person to collect (resolved when a later edit leaves no shortfall). The item keeps
    every entry it wrote, so a later edit or reversal sees them all."""
    record = item_key(ctx, old)
    ids = list(loads(old.entry_ids) or [])
    currency = old.currency
    short = False
    if delta < 0:  # take back what is still there; what was spent can't be, and is said so
        views = ctx.ledger.balance(customer, currency)
        available = views[0].available if views and views[0].available is not None else Decimal(0)
        take = min(-delta, max(available, Decimal(0)))
        short = take < -delta
        if short:
            ctx.error(record, "amount", "correction",
                      messages.spent_shortfall(why, -delta - take, currency, take))
        delta = -take
    if delta:
        posted = _post_delta(ctx, record, customer, currency, delta, key, at, why)
        if posted is None:
            return
        ids += [i for i in posted if i not in ids]
    with ctx.engine.begin() as conn:
        upsert(conn, t.items, keys, {**row, "status": row.get("status", "posted"), "entry_ids": dumps(ids)})
        for stage in ("post", "reverse") if short else ("post", "reverse", "correction"):
            resolve_error(conn, ctx.connection, record, stage, ctx.clock())


def _post_delta(ctx: Ctx, record: str, customer: str, currency: str, delta: Decimal, key: str, at: datetime,
                why: str) -> list[int] | None:
    """Post a difference (a deposit when positive, else an adjustment); its entry ids, None when refused."""
    memo = messages.difference_memo(record, why)
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
        return None
    if result.created:
        if delta > 0:
            ctx.report.deposits_posted += 1
        ctx.report.customer(customer)["postings"].append(f"{'deposit' if delta > 0 else 'adjust'} {delta} "
                                                         f"{currency} ({why})")
    return list(result.entry_ids)


def apply_deletion(ctx: Ctx, kind: str, old: StoredItem, record: str) -> None:
    """A deleted payment/consumption: reverse what it posted and raise an event flag."""
    if old.status == "posted":
        refusal = reverse_entries(ctx, old, f"#v{old.version}:delete", messages.DELETED)
        if refusal is not None and old.kind == "payment" and spent_lot(refusal):
            keys = {"connection": ctx.connection, "kind": kind, "crm_id": old.crm_id}
            post_difference(ctx, old, keys, {"status": "deleted", "event": "payment_deleted",
                                             "event_at": ctx.clock(), "fingerprint": old.fingerprint,
                                             "payload": old.payload},
                            ctx.account_of(old.kind, old.customer_id, old.crm_id), -Decimal(old.amount),
                            f"{record}#v{old.version}:deleted", ctx.clock(), messages.DELETED)
            return
        if refusal is not None:
            ctx.error(item_key(ctx, old), "amount", "reverse", refusal.message)
            return
    with ctx.engine.begin() as conn:
        conn.execute(t.items.update().where(t.items.c.connection == ctx.connection, t.items.c.kind == kind,
                                            t.items.c.crm_id == old.crm_id)
                     .values(status="deleted", event="payment_deleted" if old.status == "posted" else None,
                             event_at=ctx.clock()))
        resolve_error(conn, ctx.connection, record, "post", ctx.clock())


def retry_failed(ctx: Ctx, kinds: Iterable[str]) -> None:
    """Re-try items whose posting failed on an earlier run, from their stored payload (no CRM reads).

    Items already tried (and refused) by this run's pull are left for the next run: nothing they
    depend on has changed since, and a second try would only report the same error twice.
    """
    e = t.errors.c
    for kind in kinds:
        with ctx.engine.connect() as conn:
            rows = conn.execute(select(t.items).where(
                t.items.c.connection == ctx.connection, t.items.c.kind == kind,
                t.items.c.status == "error")).all()
            tried = set(conn.execute(select(e.record).where(
                e.connection == ctx.connection, e.stage == "post", e.run_id == ctx.run_id,
                e.resolved_at.is_(None))).scalars())
        rows = [row for row in rows if item_key(ctx, row) not in tried]
        model: type[Payment] | type[Consumption] = Payment if kind == "payment" else Consumption
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
