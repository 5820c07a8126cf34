"""Customers left as they are because one of their records came from the CRM without a mapped field.

Adapters refuse a record whose JSON lacks a mapped field (absent, as opposed to present and empty),
rather than read the gap as an empty value that would clear flags, close tasks or rewrite fields. The
refusal is a per-record error at stage `incomplete` (record, field, reason and fix). While it is open,
reconcile and push leave the record's customer exactly as it is: no flag opened or cleared, no field
written, no task opened or closed, and writes planned earlier wait. Reading the record complete again
(or its deletion) resolves the error and releases the customer.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from connector.sync.record_errors import resolve_errors
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.domain import Entity

INCOMPLETE_STAGE = "incomplete"
_CHUNK = 500


def hold(ctx: Ctx, record: str, customer_id: str | None) -> None:
    """Hold the customer of an incomplete record for this run (when the record names it; otherwise
    `held_customers` finds it from what an earlier run stored of the record)."""
    if customer_id:
        ctx.held.setdefault(customer_id, record)


def open_incomplete(ctx: Ctx, module: str) -> set[str]:
    """Keys of the module's records whose incomplete error is still open."""
    e = t.errors.c
    with ctx.engine.connect() as conn:
        return set(conn.execute(select(e.record).where(
            e.connection == ctx.connection, e.stage == INCOMPLETE_STAGE, e.resolved_at.is_(None),
            e.record.startswith(f"{ctx.mapping.crm}:{module}:", autoescape=True))).scalars())


def release(conn: Connection, ctx: Ctx, records: Iterable[str]) -> None:
    """These records were read complete (or deleted): their incomplete errors are resolved."""
    resolve_errors(conn, ctx.connection, records, INCOMPLETE_STAGE, ctx.clock())


def held_customers(ctx: Ctx) -> dict[str, str]:
    """Customer CRM id -> an incomplete record of theirs: this run's refusals and every open one before."""
    m = ctx.mapping
    e = t.errors.c
    with ctx.engine.connect() as conn:
        records = list(conn.execute(select(e.record).where(
            e.connection == ctx.connection, e.stage == INCOMPLETE_STAGE, e.resolved_at.is_(None))).scalars())
        by_module: dict[str, dict[str, str]] = {}
        for record in records:
            parts = record.split(":", 2)
            if len(parts) == 3 and parts[0] == m.crm:
                by_module.setdefault(parts[1], {})[parts[2]] = record
        held = dict(ctx.held)
        for crm_id, record in by_module.pop(m.customers.module, {}).items():
            held.setdefault(crm_id, record)
        stored = [(emap.module, t.table_of(stream), stream.item_kind) for stream, emap in m.sections()
                  if stream.entity is not Entity.CUSTOMER]
        for module, table, kind in stored:
            ids = by_module.get(module, {})
            keys = sorted(ids)
            for start in range(0, len(keys), _CHUNK):
                where = [table.c.connection == ctx.connection, table.c.crm_id.in_(keys[start:start + _CHUNK])]
                if kind is not None:
                    where.append(table.c.kind == kind)
                for crm_id, customer in conn.execute(
                        select(table.c.crm_id, table.c.customer_id).where(*where)):
                    if customer:
                        held.setdefault(customer, ids[crm_id])
    return held
