"""What a pull does with each record of a stream: customers and CRM-native balances are stored, contracts
set terms, payments and consumption are posted. Each handler buffers a page and writes it in one go."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table

from connector.db.rows import dumps, fingerprint, upsert_many
from connector.domain import Consumption, Contract, Customer, Deletion, Payment, PrepaymentBalance, Record
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.posting import apply_deletion, apply_item
from connector.sync.poster import BATCH, Poster
from connector.sync.pulled import stored_items
from connector.sync.terms import plan_terms, set_terms

Item = Record | Deletion


def _plain(value: Any) -> Any:
    """A CRM field value as JSON can hold it exactly (floats as decimal text)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return format(Decimal(str(value)), "f")
    return value


class StreamHandler:
    """Takes a stream's records one by one; rows queued with `queue` are upserted into `table`."""

    table: Table = t.items

    def __init__(self, ctx: Ctx, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.rows: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def take(self, item: Item) -> None:
        """Handle one record or deletion."""
        raise NotImplementedError

    def finish(self) -> None:
        """Process what is buffered (in its own transactions); the stream's last flush follows."""

    def queue(self, keys: dict[str, Any], values: dict[str, Any]) -> None:
        """Buffer a sync-state row; a full page is written at once."""
        self.rows.append((keys, values))
        if len(self.rows) >= BATCH:
            with self.ctx.engine.begin() as conn:
                self.flush(conn)

    def flush(self, conn: Connection) -> None:
        """Write the buffered rows inside `conn`'s transaction."""
        upsert_many(conn, self.table, [{**keys, **values} for keys, values in self.rows])
        self.rows = []


class CustomerHandler(StreamHandler):
    """Customers: stored with the fields they were read with (reconcile compares them)."""

    table = t.customers

    def take(self, item: Item) -> None:
        """Store the customer, or mark it deleted."""
        keys = {"connection": self.ctx.connection, "crm_id": item.crm_id}
        if isinstance(item, Deletion):
            self.queue(keys, {"deleted_at": item.deleted_at})
            return
        assert isinstance(item, Customer)
        self.queue(keys, {"name": item.name, "owner_id": item.owner_id, "owner_name": item.owner_name,
                          "currency": item.currency,
                          "fields": dumps(_plain(item.fields)), "deleted_at": None,
                          "modified_at": item.modified_at})


class NativeBalanceHandler(StreamHandler):
    """CRM-native prepayment balances: stored as `prepayment` items, never posted."""

    def take(self, item: Item) -> None:
        """Store the balance, or mark it deleted."""
        keys = {"connection": self.ctx.connection, "kind": "prepayment", "crm_id": item.crm_id}
        if isinstance(item, Deletion):
            self.queue(keys, {"status": "deleted", "modified_at": item.deleted_at, "fingerprint": "",
                              "payload": "{}"})
            return
        assert isinstance(item, PrepaymentBalance)
        currency = item.currency or self.ctx.mapping.currency
        amount = format(item.balance, "f")
        self.queue(keys, {"customer_id": item.customer_id, "currency": currency, "amount": amount,
                          "fingerprint": fingerprint([item.customer_id, currency, amount]),
                          "status": "native", "payload": item.model_dump_json(),
                          "modified_at": item.modified_at})


class ContractHandler(StreamHandler):
    """Contracts set terms (contract and customer level), a page at a time in one transaction."""

    table = t.contracts

    def __init__(self, ctx: Ctx, name: str) -> None:
        super().__init__(ctx, name)
        self.pending: list[Contract] = []

    def take(self, item: Item) -> None:
        """Buffer the contract (a page sets its terms); a deletion is stored after what came before it."""
        if isinstance(item, Deletion):
            self.finish()
            self.queue({"connection": self.ctx.connection, "crm_id": item.crm_id},
                       {"deleted_at": item.deleted_at, "payload": "{}"})
            return
        assert isinstance(item, Contract)
        if any(p.crm_id == item.crm_id for p in self.pending):
            self.finish()
        self.pending.append(item)
        if len(self.pending) >= BATCH:
            self.finish()

    def finish(self) -> None:
        """Set the terms of the buffered contracts that changed."""
        items, self.pending = self.pending, []
        if items:
            set_terms(self.ctx, plan_terms(self.ctx, items))


class ItemHandler(StreamHandler):
    """Payments (-> deposits) and consumption (-> consume); edits reverse and re-post; deletes reverse.

    Items are taken a page (`BATCH`) at a time: their sync state is read in one query and their
    postings go to the ledger in one transaction, with the items' state (`Poster`).
    """

    def __init__(self, ctx: Ctx, name: str) -> None:
        super().__init__(ctx, name)
        self.kind = "payment" if name == "payments" else "consumption"
        self.pending: dict[str, Payment | Consumption | Deletion] = {}

    def take(self, item: Item) -> None:
        """Buffer the item; the same item again first posts what came before it."""
        assert isinstance(item, (Payment, Consumption, Deletion))
        if item.crm_id in self.pending:
            self.finish()
        self.pending[item.crm_id] = item
        if len(self.pending) >= BATCH:
            self.finish()

    def finish(self) -> None:
        """Post (or reverse) the buffered items, in the order they came."""
        items, self.pending = list(self.pending.values()), {}
        if not items:
            return
        ctx, kind = self.ctx, self.kind
        olds = stored_items(ctx, kind, [i.crm_id for i in items])
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


HANDLERS: dict[str, type[StreamHandler]] = {
    "customers": CustomerHandler, "contracts": ContractHandler, "payments": ItemHandler,
    "consumption": ItemHandler, "prepayment": NativeBalanceHandler}


def handler_for(ctx: Ctx, name: str) -> StreamHandler:
    """The handler of stream `name`."""
    return HANDLERS[name](ctx, name)
