"""Issue 11.3/11.4: on each sandbox, the report's overdue, expiring, expired and orphaned figures are the
customers the sync flagged; payments without a customer are posted apart, flagged `orphaned`, with a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import select

from connector.ledger import Ledger
from connector.ledger.standing import CODES
from connector.reports import build_report
from connector.reports.sync_attributes import SyncAttributes
from connector.sync import tables as t


def _flagged(engine: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {code: set() for code in CODES}
    with engine.connect() as conn:
        for row in conn.execute(
                select(t.flags.c.customer_id, t.flags.c.code).where(t.flags.c.cleared_at.is_(None))):
            if row.code in out:
                out[row.code].add(row.customer_id)
    return out


def _agree(eng: Any) -> tuple[dict[str, set[str]], Any]:
    """The flags the sync keeps open, checked against the report built from the same database."""
    report = build_report(eng.engine, eng.clock(), attributes=SyncAttributes(eng.engine, eng.connection,
                                                                             eng.mapping))
    flagged = _flagged(eng.engine)
    assert {code: report.standing.get(code, set()) for code in CODES} == flagged
    assert report.standing_counts() == {code: len(keys) for code, keys in flagged.items()}
    assert report.to_dict(customers=False)["standing"]["orphaned"]["customers"] == len(flagged["orphaned"])
    # each contract is counted once: no customer-level copy of a due date
    due = [p for r in report.accounts for p in r.payments]
    assert all(p.contract_ref for p in due)
    assert len({(r.customer, p.contract_ref) for r in report.accounts for p in r.payments}) == len(due)
    return flagged, report


def test_zoho_figures_agree_and_orphans_are_flagged(tmp_path: object) -> None:
    clock = Clock(datetime(2026, 1, 20, 8, 0, tzinfo=UTC))
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=60, clock=clock, deletion_check=timedelta(0))
    assert eng.run().status == "ok"
    org = sb.org
    accounts, deals, pays = org.modules["Accounts"], org.modules["Deals"], org.modules["Prepaid_Payments"]
    paid = next(p for p in pays.records.values() if (p.get("Account") or {}).get("id") and p.get("Currency"))
    gone = paid["Account"]["id"]
    deal = next(iter(deals.records.values()))
    clock.advance(minutes=5)
    org.delete(accounts, gone)
    base = {"Payment_Status": "Received", "Currency": "USD", "Payment_Date": "2026-01-19"}
    zero = org.insert(pays,
                      {**base, "Name": "PAY-ZERO", "Account": {"name": "?", "id": "0" * 19}, "Amount": 12})
    other = org.insert(
        pays, {**base, "Name": "PAY-DEAL", "Account": {"name": "deal", "id": deal["id"]}, "Amount": 30})
    blank = org.insert(pays, {**base, "Name": "PAY-NONE", "Account": None, "Amount": 7})
    late = next(a for a in accounts.records.values() if a["id"] != gone and a.get("Currency") == "USD")
    org.insert(
        deals, {
            "Deal_Name": "Top-up", "Account_Name": {"name": late["Account_Name"], "id": late["id"]
                                                    }, "Stage": "Closed Won", "Currency": "USD",
            "Amount": Decimal(500), "Prepay_Amount": Decimal(500), "Closing_Date": "2026-01-05",
            "Valid_From": "2026-01-05", "Valid_Until": "2027-01-04", "Refund_Policy": "Full"
        })
    clock.advance(minutes=5)
    assert eng.run().status == "ok"
    flagged, report = _agree(eng)
    prefix = "zoho:Accounts:"
    assert {prefix + gone, prefix + f"unassigned-payment-{zero['id']}", prefix + deal["id"],
            prefix + f"unassigned-payment-{blank['id']}"} <= flagged["orphaned"]
    assert flagged["overdue"] == {prefix + late["id"]} and flagged["expired"] and flagged["expiring_soon"]
    balances = {v.customer: v.balance for v in Ledger(eng.engine).accounts()}
    assert balances[prefix + f"unassigned-payment-{zero['id']}"] == Decimal(12)
    assert balances[prefix + deal["id"]] == Decimal(30)
    tasks = [r for r in org.modules["Tasks"].records.values()
             if str(r.get("Prepaid_Sync_Marker", "")).startswith("ps:orphaned:")]
    markers = {r["Prepaid_Sync_Marker"] for r in tasks}
    assert f"ps:orphaned:{prefix}unassigned-payment-{zero['id']}" in markers
    related = {r["Prepaid_Sync_Marker"]: r.get("What_Id") for r in tasks}
    assert related[f"ps:orphaned:{prefix}{deal['id']}"]["id"] == other["id"]  # tied to the payment
    row = next(r for r in report.accounts if r.customer == prefix + deal["id"])
    assert row.standing == ("orphaned",)


def test_fxiaoke_figures_agree_and_orphans_are_flagged(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    store, admin = app.store, app.credentials.open_user_id
    assert eng.run().status in ("ok", "partial")
    contract = next(iter(store.table("prepay_contract__c").rows.values()))
    now_ms = int(app.clock.now() * 1000)
    zero = store.create(
        "PaymentObj", {
            "owner": [admin], "account_id": "0" * 24, "payment_amount": "88.00",
            "payment_time": now_ms - 86_400_000, "remark": "客户已删除"
        }, admin, raw=True)
    other = store.create(
        "PaymentObj", {
            "owner": [admin], "account_id": contract["_id"], "payment_amount": "66.00",
            "payment_time": now_ms - 86_400_000
        }, admin, raw=True)
    eng.clock.advance(minutes=5)
    eng.run()
    flagged, report = _agree(eng)
    prefix = "fxiaoke:AccountObj:"
    assert {prefix + f"unassigned-payment-{zero['_id']}", prefix + contract["_id"]} <= flagged["orphaned"]
    assert flagged["overdue"] and flagged["expired"]
    markers = {r.get("marker__c") for r in store.table("followup_task__c").rows.values()}
    assert f"ps:orphaned:{prefix}unassigned-payment-{zero['_id']}" in markers
    assert f"ps:orphaned:{prefix}{contract['_id']}" in markers
    assert other["_id"]
