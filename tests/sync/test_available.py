"""Available balance (spendable lots + unused credit line, from the ledger) written back to both sandboxes."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from connector.ledger import Ledger
from connector.sync import tables as t
from helpers import Clock, fxiaoke_engine, zoho_engine


def _written(eng: object, run_id: int) -> dict[str, dict[str, object]]:
    """Payloads the run sent, by CRM record id."""
    with eng.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(t.outbox).where(t.outbox.c.run_id == run_id, t.outbox.c.kind == "write",
                                                   t.outbox.c.status == "ok")).all()
    return {r.crm_id: json.loads(r.payload) for r in rows}


def test_zoho_available_follows_the_ledger_and_is_rewritten_only_on_change(tmp_path: object) -> None:
    clock = Clock()
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
    org = sb.org
    accounts, deals = org.modules["Accounts"], org.modules["Deals"]
    assert eng.run().status == "ok"
    ledger = Ledger(eng.engine, clock=clock)
    views = ledger.balances_with_prefix("zoho:Accounts:")
    assert views
    for (key, cur), view in views.items():
        rec = accounts.records.get(key.rsplit(":", 1)[1])
        if rec is not None:
            assert Decimal(str(rec["Prepaid_Available"])) == ledger.balance(
                key, cur)[0].available == view.available
    credit_key = next(k for k, v in views.items() if v.balance > 0 and k[1] == "USD")[0]
    promo_key = next(k for k, v in views.items() if v.balance > 0 and k[1] == "USD" and k[0] != credit_key)[0]
    credit_id, promo_id = credit_key.rsplit(":", 1)[1], promo_key.rsplit(":", 1)[1]
    deal = next(d for d in deals.records.values() if d["Account_Name"]["id"] == credit_id)
    old_balance = Decimal(str(accounts.records[credit_id]["Prepaid_Balance"]))
    promo_balance = Decimal(str(accounts.records[promo_id]["Prepaid_Balance"]))
    clock.advance(minutes=5)
    org.update(deals, deal["id"], {"Credit_Limit": Decimal("500.00")})
    eng.run()  # the credit line reaches the ledger's terms
    assert Decimal(str(accounts.records[credit_id]["Prepaid_Available"])) == old_balance + 500
    assert Decimal(str(accounts.records[credit_id]["Prepaid_Balance"])) == old_balance
    ledger.consume(credit_key, old_balance + 100, "USD", "usage-1")  # 100 into the credit line
    ledger.deposit(promo_key, "250.00", "USD", "promo-1", expires_at=clock() + timedelta(days=10))
    clock.advance(minutes=5)
    report = eng.run()
    sent = _written(eng, report.run_id)
    assert Decimal(str(accounts.records[credit_id]["Prepaid_Balance"])) == Decimal("-100")
    assert Decimal(str(accounts.records[credit_id]["Prepaid_Available"])) == Decimal(
        "400")  # 500 line - 100 used
    assert Decimal(str(accounts.records[promo_id]["Prepaid_Available"])) == promo_balance + 250
    assert "Prepaid_Available" in sent[promo_id] and "Prepaid_Available" in sent[credit_id]
    clock.advance(minutes=5)
    assert eng.run().records_written == 0
    clock.advance(days=11)  # the promotional lot lapsed: the balance stays, only the available balance moves
    later = _written(eng, eng.run().run_id)
    assert Decimal(str(accounts.records[promo_id]["Prepaid_Available"])) == promo_balance
    assert Decimal(str(accounts.records[promo_id]["Prepaid_Balance"])) == promo_balance + 250
    assert "Prepaid_Available" in later[promo_id] and "Prepaid_Balance" not in later[promo_id]
    clock.advance(minutes=5)
    assert eng.run().records_written == 0


def test_fxiaoke_available_is_written_and_a_manual_edit_restored(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    store, admin = app.store, app.credentials.open_user_id
    assert eng.run().records_written > 0
    ledger = Ledger(eng.engine, clock=eng.clock)
    rows = store.table("AccountObj").rows
    checked = 0
    for (key, cur), view in ledger.balances_with_prefix("fxiaoke:AccountObj:").items():
        rec = rows.get(key.rsplit(":", 1)[1])
        if rec is not None and cur == "CNY":
            assert Decimal(str(rec["prepaid_available__c"])) == ledger.balance(key, cur)[0].available
            checked += 1
    assert checked
    eng.clock.advance(minutes=5)
    assert eng.run().records_written == 0
    victim = next(k for k, r in rows.items() if r.get("prepaid_available__c") not in (None, ""))
    right = Decimal(str(rows[victim]["prepaid_available__c"]))
    store.update("AccountObj", victim, {"prepaid_available__c": str(right + 1000)}, admin)
    eng.clock.advance(minutes=5)
    report = eng.run()
    assert report.records_written == 1 and Decimal(str(rows[victim]["prepaid_available__c"])) == right
    assert "manual_edit" in rows[victim]["prepaid_flags__c"]
    eng.clock.advance(minutes=5)
    assert eng.run().records_written == 0
