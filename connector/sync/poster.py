"""A page's postings sent to the ledger as one batch, each committed with the item state row recording it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from connector.db.rows import dumps, upsert, upsert_many
from connector.domain import Consumption, Deletion, Payment
from connector.errors import ConnectorError, InsufficientBalance
from connector.ledger.planners import Request
from connector.ledger.service import BatchOutcome
from connector.sync import messages
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.pulled import contract_valid_until, customer_currencies, customer_currency
from connector.sync.record_errors import resolve_errors
from connector.timeutil import zone as time_zone

BATCH = 200  # records read per page of sync state, and postings per ledger batch


@dataclass(frozen=True)
class ItemRow:
    """An item's sync-state row to write (keys included), and whether the item is seen the first time."""

    values: dict[str, Any]
    new: bool


@dataclass(frozen=True)
class PendingPosting:
    """A payment or consumption ready to post: its ledger request and the item state row it commits with."""

    kind: str  # "payment" or "consumption"
    request: Request
    keys: dict[str, Any]  # the item row's primary key
    row: dict[str, Any]  # the item row's other values (status and entry ids follow the outcome)
    record: str  # the record key errors are filed under
    amount_field: str  # the CRM field a refusal names
    date_field: str  # the CRM field a refusal blames when the date is the likely mistake
    zone: str | None  # that date field's zone, to quote the date as the CRM shows it
    customer: str  # the ledger customer key it posts to
    label: str  # its line in the run report
    new: bool


class Poster:
    """Collects postings (and state-only item rows) and sends them as one ledger batch.

    Each posting's item state row is written in the batch's transaction (`Ledger.post_batch`
    hook), so a posting and the state that says it was made commit together or not at all.
    """

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.pending: list[PendingPosting] = []
        self.rows: list[ItemRow] = []  # state-only item rows
        self.currencies: dict[str, str | None] = {}
        self.ends: dict[str, datetime | None] = {}  # contract id -> validity end (lot_expiry: valid_until)

    def prefetch(self, items: Iterable[Payment | Consumption | Deletion]) -> None:
        """Read the currencies of the customers of `items` that carry none, in one query."""
        ids = {i.customer_id for i in items
               if not isinstance(i, Deletion) and not i.currency and i.customer_id}
        self.currencies |= dict.fromkeys(ids, None) | customer_currencies(self.ctx, ids)

    def lot_expiry(self, item: Payment, at: datetime) -> datetime | None:
        """The expiry of the lot a payment funds: with mapping `lot_expiry: valid_until`, the end of its
        contract's last valid day (in that field's zone); none without a contract or validity end, or
        when the contract had already ended when the money arrived (it stays spendable; `expired` says so)."""
        m = self.ctx.mapping
        if m.lot_expiry != "valid_until" or not item.contract_id:
            return None
        if item.contract_id not in self.ends:
            until = contract_valid_until(self.ctx, item.contract_id)
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
        return customer_currency(self.ctx, crm_id)

    def flush(self) -> None:
        """Post everything collected in one transaction, then record the refusals (run goes on)."""
        pending, rows = self.pending, self.rows
        self.pending, self.rows = [], []
        ctx = self.ctx
        if not pending:
            if rows:
                with ctx.engine.begin() as conn:
                    write_rows(conn, rows)
            return
        now = ctx.clock()

        def hook(conn: Connection, outcomes: list[BatchOutcome]) -> None:
            done = [(p, o.result) for p, o in zip(pending, outcomes, strict=True) if o.result is not None]
            posted = [ItemRow({**p.keys, **p.row, "status": "posted", "entry_ids": dumps(res.entry_ids)},
                              p.new) for p, res in done]
            write_rows(conn, rows + posted)
            resolve_errors(conn, ctx.connection, [p.record for p, _ in done], "post", now)

        outcomes = ctx.ledger.post_batch([p.request for p in pending], hook=hook)
        for p, o in zip(pending, outcomes, strict=True):
            if o.error is not None:
                fail(ctx, p.keys, p.row, p.record, *_refusal(ctx, p, o.error))
            elif o.result is not None and o.result.created:
                if p.kind == "payment":
                    ctx.report.deposits_posted += 1
                else:
                    ctx.report.consumptions_posted += 1
                ctx.report.customer(p.customer)["postings"].append(p.label)


def write_rows(conn: Connection, rows: list[ItemRow]) -> None:
    """Item state rows: plain inserts for items seen the first time, upserts for the others."""
    new = [row.values for row in rows if row.new]
    if new:
        conn.execute(t.items.insert(), new)
    upsert_many(conn, t.items, [row.values for row in rows if not row.new])


def fail(ctx: Ctx, keys: dict[str, Any], row: dict[str, Any], record: str, fld: str, reason: str) -> None:
    """Store the item as failed (a later run tries it again) and record why."""
    with ctx.engine.begin() as conn:
        upsert(conn, t.items, keys, {**row, "status": "error", "entry_ids": "[]"})
    ctx.error(record, fld, "post", reason)


def _refusal(ctx: Ctx, p: PendingPosting, error: ConnectorError) -> tuple[str, str]:
    """The field to name and the reason to record for a refused posting.

    A consumption refused for want of money while the customer has a deposit dated after it was most
    likely entered with the wrong date (a lot cannot be spent before it takes effect): say so, with
    both dates, and name the date field.
    """
    if p.kind != "consumption" or not isinstance(error, InsufficientBalance):
        return p.amount_field, error.message
    at: datetime = p.row["at"]
    i = t.items.c
    with ctx.engine.connect() as conn:
        deposits = list(conn.execute(select(i.at).where(
            i.connection == ctx.connection, i.kind == "payment", i.status == "posted",
            i.customer_id == p.row["customer_id"], i.currency == p.row["currency"]).order_by(i.at)).scalars())
    later = [d for d in deposits if d is not None and d > at]
    if not later:
        # no later deposit would fund it: an amount or a payment is wrong
        return p.amount_field, error.message
    paid_at = ctx.mapping.payments.fields.get("paid_at")
    first = messages.local_time(later[0], paid_at.timezone if paid_at else None)
    when = messages.local_time(at, p.zone)
    if len(later) == len(deposits):
        return p.date_field, messages.consumption_before_any_deposit(when, first)
    details = error.details
    return p.date_field, messages.consumption_before_its_funding(
        details.get("amount"), details.get("available"), p.row["currency"], when, first)
