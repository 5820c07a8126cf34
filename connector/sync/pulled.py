"""Reads of what earlier pulls stored: customers' currencies, a contract's validity end, items' sync state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, select

from connector.db.rows import loads
from connector.sync import tables as t
from connector.sync.context import Ctx


def customer_currencies(ctx: Ctx, crm_ids: Iterable[str]) -> dict[str, str]:
    """Currencies of many pulled customers at once (customers without one are left out)."""
    ids = sorted(set(crm_ids))
    if not ids:
        return {}
    c = t.customers.c
    with ctx.engine.connect() as conn:
        return {r.crm_id: r.currency for r in conn.execute(select(c.crm_id, c.currency).where(
            c.connection == ctx.connection, c.crm_id.in_(ids))) if r.currency}


def customer_currency(ctx: Ctx, crm_id: str) -> str | None:
    """One pulled customer's currency, or None."""
    with ctx.engine.connect() as conn:
        currency: str | None = conn.execute(select(t.customers.c.currency).where(
            t.customers.c.connection == ctx.connection, t.customers.c.crm_id == crm_id)).scalar()
    return currency


def contract_valid_until(ctx: Ctx, contract_id: str) -> Any:
    """The stored `valid_until` of a pulled, not deleted contract (as its payload holds it), or None."""
    c = t.contracts.c
    with ctx.engine.connect() as conn:
        payload = conn.execute(select(c.payload).where(
            c.connection == ctx.connection, c.crm_id == contract_id, c.deleted_at.is_(None))).scalar()
    return (loads(payload) or {}).get("valid_until") if payload else None


def stored_items(ctx: Ctx, kind: str, crm_ids: list[str]) -> dict[str, Row[Any]]:
    """The sync-state rows of many items of one kind, by CRM id."""
    c = t.items.c
    with ctx.engine.connect() as conn:
        return {r.crm_id: r for r in conn.execute(select(t.items).where(
            c.connection == ctx.connection, c.kind == kind, c.crm_id.in_(crm_ids)))}
