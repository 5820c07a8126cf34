"""CRM worlds for sync tests: an established connection with open overdue tasks, records the CRM sends
without a field, and snapshots of what the sandboxes hold."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import select

from connector.sync import SyncEngine
from connector.sync import tables as t

ID = {"zoho": "id", "fxiaoke": "_id"}


def strip(eng: SyncEngine, crm: str, module: str, field: str, ids: set[str]) -> Callable[[], None]:
    """Have the CRM leave `field` out of the JSON of these records (as for a field the API user may not see);
    returns the undo."""
    client = eng.adapter.client  # type: ignore[attr-defined]
    real = client.iter_records

    def iter_records(api_name: str, *args: Any, **kw: Any) -> Iterator[dict[str, Any]]:
        for row in real(api_name, *args, **kw):
            if api_name == module and str(row.get(ID[crm])) in ids:
                row = {k: v for k, v in row.items() if k != field}
            yield row

    client.iter_records = iter_records
    return lambda: setattr(client, "iter_records", real)


def crm_tasks(crm: str, sb: Any) -> dict[str, Any]:
    if crm == "zoho":
        return copy.deepcopy(sb.org.modules["Tasks"].records)
    return copy.deepcopy(sb.store.tables["followup_task__c"].rows)


def customer_record(crm: str, sb: Any, crm_id: str) -> dict[str, Any]:
    if crm == "zoho":
        return copy.deepcopy(sb.org.modules["Accounts"].records[crm_id])
    return copy.deepcopy(sb.store.tables["AccountObj"].rows[crm_id])


def overdue_world(crm: str, tmp_path: Path) -> tuple[SyncEngine, Any, Callable[..., None], str, set[str]]:
    """An established connection with open `overdue` flags whose CRM tasks are open; returns one such customer
    and its contracts."""
    if crm == "zoho":
        clock = Clock()
        eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
        advance = clock.advance
        eng.run()
        advance(minutes=5)
        deals = sb.org.modules["Deals"]
        for rec in [r for r in deals.records.values() if (r.get("Account_Name") or {}).get("id")][:12]:
            sb.org.update(deals, rec["id"],
                          {"Prepay_Amount": Decimal("900000"), "Closing_Date": "2025-12-01"})
    else:
        eng, sb = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40)
        advance = eng.clock.advance  # type: ignore[attr-defined]
    eng.run()
    advance(minutes=5)
    with eng.engine.connect() as conn:
        flagged = conn.execute(select(t.flags.c.customer_id).where(
            t.flags.c.code == "overdue", t.flags.c.cleared_at.is_(None), t.flags.c.task_id.is_not(None))
            .order_by(t.flags.c.customer_id)).scalars().all()
        assert len(flagged) >= 10
        customer = flagged[0].rsplit(":", 1)[1]
        contracts = set(
            conn.execute(select(t.contracts.c.crm_id).where(t.contracts.c.customer_id == customer)).scalars())
    assert contracts
    return eng, sb, advance, customer, contracts


def crm_snapshot(crm: str, sandbox: Any) -> dict[str, Any]:
    """Every record of every module/object the sandbox holds."""
    if crm == "zoho":
        return {name: copy.deepcopy(mod.records) for name, mod in sandbox.org.modules.items()}
    return {name: copy.deepcopy(table.rows) for name, table in sandbox.store.tables.items()}


def end_contracts(crm: str, sb: Any, eng: SyncEngine, customers: set[str]) -> int:
    """Mark every contract of these customers ended in the CRM (as a bulk edit would); how many."""
    n = 0
    if crm == "zoho":
        deals = sb.org.modules["Deals"]
        for rec in list(deals.records.values()):
            if (rec.get("Account_Name") or {}).get("id") in customers:
                sb.org.update(deals, rec["id"], {"Stage": "Closed Lost"})
                n += 1
        return n
    user = sb.staff[0].open_user_id
    for rid, rec in list(sb.store.tables["prepay_contract__c"].rows.items()):
        if rec.get("account_id__c") in customers:
            sb.store.update("prepay_contract__c", rid, {"contract_status__c": "Hh7Qe"}, user, True)
            n += 1
    return n


def overdue_customers(eng: SyncEngine) -> set[str]:
    """CRM ids of the customers with an open overdue flag whose task is open."""
    with eng.engine.connect() as conn:
        return {
            k.rsplit(":", 1)[1]
            for k in conn.execute(
                select(t.flags.c.customer_id).where(t.flags.c.code == "overdue", t.flags.c.cleared_at.is_(
                    None), t.flags.c.task_id.is_not(None))).scalars()
        }
