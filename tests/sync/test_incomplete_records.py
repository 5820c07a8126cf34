"""A pulled record that lacks a mapped field (absent from the CRM's JSON, not null) is an error for that
record; its customer is left exactly as it is: no flag cleared, no task closed, no field rewritten, no
posting reversed."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from crm_worlds import crm_tasks, customer_record, overdue_world, strip
from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import select

from connector.adapters.base import EntitySpec
from connector.domain import Contract, Entity
from connector.ledger import Ledger
from connector.sync import SyncEngine
from connector.sync import tables as t
from connector.sync.holds import INCOMPLETE_STAGE

def open_flags_of(eng: SyncEngine, customer: str) -> list[tuple[str, str | None]]:
    with eng.engine.connect() as conn:
        return sorted(conn.execute(select(t.flags.c.code, t.flags.c.task_id).where(
            t.flags.c.customer_id.endswith(f":{customer}"), t.flags.c.cleared_at.is_(None))).all())


def incomplete_errors(eng: SyncEngine) -> list[Any]:
    with eng.engine.connect() as conn:
        return conn.execute(select(t.errors).where(t.errors.c.stage == INCOMPLETE_STAGE)
                            .order_by(t.errors.c.record)).all()


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_contract_without_its_amount_field_clears_no_flag_and_closes_no_task(crm: str,
                                                                               tmp_path: Path) -> None:
    eng, sb, advance, customer, contracts = overdue_world(crm, tmp_path)
    field = eng.mapping.contracts.fields["prepay_amount"].crm
    flags, tasks, record = open_flags_of(eng, customer), crm_tasks(crm,
                                                                   sb), customer_record(crm, sb, customer)
    assert any(code == "overdue" and task for code, task in flags)
    undo = strip(eng, crm, eng.mapping.contracts.module, field, contracts)
    report = eng.run(full=True)
    assert report.status == "partial" and report.customers_held == 1
    assert report.flags_cleared == 0 and report.tasks_closed == 0 and report.records_written == 0
    assert open_flags_of(eng, customer) == flags and crm_tasks(crm, sb) == tasks
    assert customer_record(crm, sb, customer) == record
    errors = incomplete_errors(eng)
    assert {e.record for e in errors} == {f"{crm}:{eng.mapping.contracts.module}:{c}" for c in contracts}
    assert {e.field for e in errors} == {field}
    reason = errors[0].reason
    assert "absent from the record the CRM sent" in reason and "mappings check --online" in reason
    assert "sync run --full" in reason
    undo()
    advance(minutes=5)
    again = eng.run()  # not re-read (unchanged in the CRM): its error is still open, so it is still held
    assert again.customers_held == 1 and open_flags_of(eng, customer) == flags
    advance(minutes=5)
    full = eng.run(full=True)  # read complete again: the error is resolved and the customer released
    assert full.customers_held == 0 and all(e.resolved_at is not None for e in incomplete_errors(eng))
    assert open_flags_of(eng, customer) == flags and crm_tasks(crm, sb) == tasks


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_posted_payment_without_a_mapped_field_is_not_reversed(crm: str, tmp_path: Path) -> None:
    if crm == "zoho":
        eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=Clock())
        # read as empty, it would make the payment unpostable
        field, module = "Payment_Status", "Prepaid_Payments"
    else:
        eng, sb = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40)
        field, module = "contract_id__c", "PaymentObj"  # read as empty, it would unlink it from its contract
    eng.run()
    with eng.engine.connect() as conn:
        posted = conn.execute(select(t.items).where(t.items.c.kind == "payment", t.items.c.status == "posted")
                              .order_by(t.items.c.crm_id)).all()
    victims = {row.crm_id for row in posted[:5]}
    balances = {v.customer: v.balance for v in Ledger(eng.engine).accounts()}
    strip(eng, crm, module, field, victims)
    report = eng.run(full=True)
    assert report.reversals_posted == 0 and report.deposits_posted == 0
    assert {v.customer: v.balance for v in Ledger(eng.engine).accounts()} == balances
    with eng.engine.connect() as conn:
        after = {
            r.crm_id: r
            for r in conn.execute(select(t.items).where(t.items.c.crm_id.in_(victims))).all()
        }
    before = {r.crm_id: r for r in posted if r.crm_id in victims}
    assert {k: (r.status, r.contract_id, r.fingerprint) for k, r in after.items()} == \
        {k: (r.status, r.contract_id, r.fingerprint) for k, r in before.items()}
    assert {e.record for e in incomplete_errors(eng)} == {f"{crm}:{module}:{v}" for v in victims}
    assert report.customers_held == len({r.customer_id for r in posted[:5]})


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_customer_without_a_read_back_field_is_not_rewritten_or_flagged(crm: str, tmp_path: Path) -> None:
    if crm == "zoho":
        clock = Clock()
        eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
        advance = clock.advance
    else:
        eng, sb = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40)
        advance = eng.clock.advance  # type: ignore[attr-defined]
    eng.run()
    advance(minutes=5)
    field = eng.mapping.write_back["balance"].crm
    with eng.engine.connect() as conn:
        ids = set(
            conn.execute(select(t.customers.c.crm_id).order_by(t.customers.c.crm_id).limit(3)).scalars())
    records = {i: customer_record(crm, sb, i) for i in ids}
    strip(eng, crm, eng.mapping.customers.module, field, ids)
    report = eng.run(full=True)  # read as empty, the balance would look hand-edited: flagged and rewritten
    assert {i: customer_record(crm, sb, i) for i in ids} == records
    assert report.flags_opened == 0 and report.records_written == 0 and report.customers_held == 3
    assert {e.field for e in incomplete_errors(eng)} == {field}


def test_zoho_adapter_tells_absent_from_null(tmp_path: Path) -> None:
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=10, clock=Clock())
    deals = sb.org.modules["Deals"]
    target = next(r for r in deals.records.values() if (r.get("Account_Name") or {}).get("id"))
    sb.org.update(deals, target["id"], {"Refund_Fee_Pct": None})
    spec = EntitySpec(entity=Entity.CONTRACT, module="Deals", fields={
        "customer_id": "Account_Name", "refund_fee_pct": "Refund_Fee_Pct", "name": "Deal_Nmae"})
    out = list(eng.adapter.stream(spec))
    assert out == []  # every Deal lacks the (misspelt) Deal_Nmae: none is read as nameless
    rejected = eng.adapter.rejected
    mine = next(r for r in rejected if r.record.endswith(target["id"]))
    assert mine.incomplete and mine.field == "Deal_Nmae" and mine.customer_id == target["Account_Name"]["id"]
    spec = EntitySpec(entity=Entity.CONTRACT, module="Deals", fields={
        "customer_id": "Account_Name", "refund_fee_pct": "Refund_Fee_Pct"})
    read = {r.crm_id: r for r in eng.adapter.stream(spec) if isinstance(r, Contract)}
    assert read[target["id"]].refund_fee_pct is None  # present and null: empty, as the CRM says


def test_fxiaoke_asks_for_nulls_and_tells_absent_from_null(tmp_path: Path) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=10)
    rows = app.store.tables["prepay_contract__c"].rows
    target = next(r for r in rows.values() if r.get("account_id__c"))
    target.pop("refund_fee_pct__c", None)  # an empty field: the tenant stores nothing for it
    spec = EntitySpec(entity=Entity.CONTRACT, module="prepay_contract__c", fields={
        "customer_id": "account_id__c", "refund_fee_pct": "refund_fee_pct__c", "due_date": "due_dtae__c"})
    assert list(eng.adapter.stream(spec)) == []
    rejected = eng.adapter.rejected
    mine = next(r for r in rejected if r.crm_id == target["_id"])
    assert mine.incomplete and mine.field == "due_dtae__c" and mine.customer_id == target["account_id__c"]
    spec = EntitySpec(entity=Entity.CONTRACT, module="prepay_contract__c", fields={
        "customer_id": "account_id__c", "refund_fee_pct": "refund_fee_pct__c", "valid_from": "valid_from__c"})
    read = {r.crm_id: r for r in eng.adapter.stream(spec) if isinstance(r, Contract)}
    assert read[target["_id"]].refund_fee_pct is None
    assert all(isinstance(r.valid_from, date) or r.valid_from is None for r in read.values())
