"""Pulled contracts -> ledger terms: each changed contract sets its own terms and its customer's, and its sync
state commits in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from connector.db.rows import dumps, fingerprint, loads, upsert_many
from connector.domain import Contract
from connector.errors import ConnectorError, field_reason
from connector.ledger.rules import REFUND_POLICIES
from connector.mapping.models import EntityMap
from connector.sync import messages
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.derive import ENDED
from connector.sync.pulled import customer_currencies
from connector.sync.record_errors import resolve_errors


@dataclass(frozen=True)
class ContractTerms:
    """A changed contract's terms: the row of the contract and that of its customer."""

    item: Contract
    payload: dict[str, Any]  # what is stored (and fingerprinted) as the contract's sync state
    currency: str
    contract_terms: dict[str, Any]
    customer_terms: dict[str, Any]

    def state_row(self, connection: str) -> dict[str, Any]:
        """The contract's sync-state row, written once its terms are set."""
        item = self.item
        return {"connection": connection, "crm_id": item.crm_id, "customer_id": item.customer_id,
                "currency": self.currency, "payload": dumps(self.payload), "deleted_at": None,
                "modified_at": item.modified_at}


def _picked(emap: EntityMap, attr: str, value: Any) -> Any:
    fmap = emap.fields.get(attr)
    return fmap.from_crm(value) if fmap is not None and isinstance(value, str) else value


def contract_payload(emap: EntityMap, item: Contract) -> dict[str, Any]:
    """What a contract's sync state holds (picklist values in our terms)."""
    return {"crm_id": item.crm_id, "name": item.name, "prepay_amount": item.prepay_amount,
            "due_date": item.due_date, "valid_from": item.valid_from, "valid_until": item.valid_until,
            "refund_policy": _picked(emap, "refund_policy", item.refund_policy),
            "refund_fee_pct": item.refund_fee_pct, "credit_limit": item.credit_limit,
            "low_balance_threshold": item.low_balance_threshold,
            "status": _picked(emap, "status", item.status), "customer_id": item.customer_id}


def _terms(ctx: Ctx, item: Contract, payload: dict[str, Any], currency: str) -> ContractTerms:
    policy = payload["refund_policy"] if payload["refund_policy"] in REFUND_POLICIES else "full"
    # The customer-level row holds what is per customer (refund policy, credit line, threshold: the
    # last contract pulled sets them); the contract's amount, due date and validity live on its own
    # row only, so a reader walking the terms sees each contract once (migration 0004).
    customer_terms = dict(customer=ctx.customer_key(item.customer_id or ""), currency=currency,
                          refund_policy=policy, refund_fee_pct=item.refund_fee_pct or 0,
                          credit_limit=item.credit_limit or 0,
                          low_balance_threshold=item.low_balance_threshold)
    contract_terms = {**customer_terms, "contract_ref": item.key, "agreed_amount": item.prepay_amount,
                      "due_date": item.due_date, "valid_from": item.valid_from,
                      "valid_until": item.valid_until, "active": payload["status"] not in ENDED}
    return ContractTerms(item, payload, currency, contract_terms, customer_terms)


def plan_terms(ctx: Ctx, items: Sequence[Contract]) -> list[ContractTerms]:
    """The terms of the contracts that changed since they were stored; the others are left, and a contract
    without a customer or currency is recorded as an error."""
    emap = ctx.mapping.contracts
    c = t.contracts.c
    with ctx.engine.connect() as conn:
        olds = {r.crm_id: r for r in conn.execute(select(c.crm_id, c.payload, c.deleted_at).where(
            c.connection == ctx.connection, c.crm_id.in_([i.crm_id for i in items])))}
    currencies = customer_currencies(ctx, [i.customer_id for i in items if not i.currency and i.customer_id])
    out: list[ContractTerms] = []
    for item in items:
        payload = contract_payload(emap, item)
        old = olds.get(item.crm_id)
        unchanged = old is not None and old.deleted_at is None and \
            fingerprint(loads(old.payload)) == fingerprint(payload)
        if unchanged:
            continue  # unchanged (an overlap re-read or an echo)
        if not item.customer_id:
            ctx.error(item.key, emap.fields["customer_id"].crm, "pull", messages.CONTRACT_WITHOUT_CUSTOMER)
            continue
        currency = item.currency or currencies.get(item.customer_id) or ctx.mapping.currency
        if not currency:
            ctx.error(item.key, "currency", "pull", messages.CONTRACT_WITHOUT_CURRENCY)
            continue
        out.append(_terms(ctx, item, payload, currency))
    return out


def _refusals(plans: Sequence[ContractTerms], outcomes: Sequence[ConnectorError | None]
              ) -> list[tuple[ContractTerms, ConnectorError | None]]:
    """Each contract with the ledger's refusal of its terms (None: both rows set); outcomes come two per
    contract, in the order `set_terms` sends them."""
    pairs = zip(outcomes[0::2], outcomes[1::2], strict=True)
    return [(plan, first if first is not None else second)
            for plan, (first, second) in zip(plans, pairs, strict=True)]


def set_terms(ctx: Ctx, plans: Sequence[ContractTerms]) -> None:
    """Set the planned terms in one ledger transaction, with the sync state of the contracts that got them."""
    if not plans:
        return
    now = ctx.clock()

    def hook(conn: Connection, outcomes: list[ConnectorError | None]) -> None:
        # The contract's sync state commits with its terms.
        done = [plan for plan, refused in _refusals(plans, outcomes) if refused is None]
        resolve_errors(conn, ctx.connection, [plan.item.key for plan in done], "terms", now)
        upsert_many(conn, t.contracts, [plan.state_row(ctx.connection) for plan in done])

    rows = [row for plan in plans for row in (plan.contract_terms, plan.customer_terms)]
    outcomes = ctx.ledger.set_terms_many(rows, hook=hook)
    for plan, exc in _refusals(plans, outcomes):
        if exc is not None:
            ctx.error(plan.item.key, str(exc.details.get("field", "")), "terms", field_reason(exc))
        else:
            ctx.report.terms_set += 1
