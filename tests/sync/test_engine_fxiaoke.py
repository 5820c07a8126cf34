"""End to end against the Fxiaoke sandbox (in-process): option codes, inline invalidation, consumption, tasks."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from sqlalchemy import select

from connector.ledger import Ledger
from connector.sync import tables as t
from helpers import fxiaoke_engine


def _balances(engine: object) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for v in Ledger(engine).accounts():  # type: ignore[arg-type]
        out[v.customer] = out.get(v.customer, Decimal(0)) + v.balance
    return out


def test_fxiaoke_full_edit_invalidate_manual_edit(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    store, admin = app.store, app.credentials.open_user_id
    first = eng.run()
    assert first.deposits_posted > 0 and first.records_written == len(store.table("AccountObj").rows)
    assert any(e["field"] == "payment_amount" and "positive" in e["reason"] for e in first.errors)
    accounts = store.table("AccountObj").rows
    tiers = {r.get("prepaid_tier__c") for r in accounts.values()}
    assert tiers <= {"tq8Ga", "Lw2xR", "p0Zk3"}  # tier written as the tenant's option codes
    eng.clock.advance(minutes=5)
    assert eng.run().records_written == 0  # echoes of our writes
    pays = [r for r in store.table("PaymentObj").rows.values()
            if r.get("account_id") in accounts and r.get("life_status") == "normal"
            and not str(r["payment_amount"]).startswith(("-", "0"))]
    edited, voided = pays[0], pays[1]
    victim = pays[2]["account_id"]
    store.update("PaymentObj", edited["_id"], {"payment_amount": str(Decimal(edited["payment_amount"]) + 1)}, admin)
    store.set_life_status("PaymentObj", voided["_id"], "invalid", admin)
    store.update("AccountObj", victim, {"prepaid_balance__c": "1.00"}, admin)
    eng.clock.advance(minutes=5)
    report = eng.run()
    assert report.reversals_posted == 2 and report.deposits_posted == 1
    assert Decimal(accounts[victim]["prepaid_balance__c"]) == _balances(eng.engine)[f"fxiaoke:AccountObj:{victim}"]
    with eng.engine.connect() as conn:
        codes = Counter(r.code for r in conn.execute(select(t.flags).where(t.flags.c.cleared_at.is_(None))))
    assert codes["manual_edit"] == 1 and codes["payment_changed"] >= 1 and codes["payment_deleted"] >= 1
    tasks = store.table("followup_task__c").rows.values()
    markers = Counter(r.get("marker__c") for r in tasks)
    assert markers and max(markers.values()) == 1
    eng.clock.advance(minutes=5)
    quiet = eng.run()
    assert quiet.records_written == 0 and quiet.tasks_created == 0 and quiet.deposits_posted == 0
