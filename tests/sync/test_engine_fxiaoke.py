"""End to end against the Fxiaoke sandbox (in-process): option codes, inline invalidation, consumption,
tasks."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from helpers import fxiaoke_engine
from sqlalchemy import select

from connector.ledger import Ledger
from connector.sync import tables as t


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
    # Customers that spent nothing: a deposit already drawn on cannot be reversed (the ledger refuses).
    spending = {r.get("customer_id") for r in store.table("PrepayDetailObj").rows.values()
                if r.get("record_type") != "income_record_type__c"}
    pays = [r for r in store.table("PaymentObj").rows.values()
            if r.get("account_id") in accounts and r.get("account_id") not in spending
            and r.get("life_status") == "normal" and not str(r["payment_amount"]).startswith(("-", "0"))]
    edited, voided = pays[0], pays[1]
    victim = pays[2]["account_id"]
    store.update("PaymentObj", edited["_id"], {"payment_amount": str(Decimal(edited["payment_amount"]) + 1)},
                 admin)
    store.set_life_status("PaymentObj", voided["_id"], "invalid", admin)
    store.update("AccountObj", victim, {"prepaid_balance__c": "1.00"}, admin)
    eng.clock.advance(minutes=5)
    report = eng.run()
    assert report.reversals_posted == 2 and report.deposits_posted == 1
    assert Decimal(accounts[victim]["prepaid_balance__c"]) == _balances(
        eng.engine)[f"fxiaoke:AccountObj:{victim}"]
    with eng.engine.connect() as conn:
        codes = Counter(r.code for r in conn.execute(select(t.flags).where(t.flags.c.cleared_at.is_(None))))
    assert codes["manual_edit"] == 1 and codes["payment_changed"] >= 1 and codes["payment_deleted"] >= 1
    tasks = store.table("followup_task__c").rows.values()
    markers = Counter(r.get("marker__c") for r in tasks)
    assert markers and max(markers.values()) == 1
    eng.clock.advance(minutes=5)
    quiet = eng.run()
    assert quiet.records_written == 0 and quiet.tasks_created == 0 and quiet.deposits_posted == 0


def _local(ms: int, fmt: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo("Asia/Shanghai")).strftime(fmt)


def test_consumption_dated_before_its_deposit_is_refused_with_an_actionable_error(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    store, admin = app.store, app.credentials.open_user_id
    no_credit = {c["account_id__c"] for c in store.table("prepay_contract__c").rows.values()
                 if c.get("credit_limit__c") == "0.00"}  # (a credit line would fund the consumption)
    good: dict[str, list[dict[str, Any]]] = {}
    for r in store.table("PaymentObj").rows.values():
        if r.get("life_status") == "normal" and not str(r["payment_amount"]).startswith(("-", "0")) and \
                r.get("account_id") in no_credit:
            good.setdefault(r["account_id"], []).append(r)
    one = next(a for a, ps in good.items() if len(ps) == 1)
    two = next(a for a, ps in good.items() if len(ps) == 2)
    first, second = sorted(good[two], key=lambda r: r["payment_time"])
    early = store.create(
        "PrepayDetailObj", {
            "owner": [admin], "customer_id": one, "amount": "10.00", "outcome_type": "1",
            "record_type": "default__c",
            "transaction_time": good[one][0]["payment_time"] - 2 * 86_400_000 + 10 * 3_600_000
        }, admin)
    between = store.create("PrepayDetailObj", {
        "owner": [admin], "customer_id": two, "amount": f"{Decimal(first['payment_amount']) + 1:.2f}",
        "outcome_type": "1", "record_type": "default__c",
        "transaction_time": first["payment_time"] + 86_400_000}, admin)
    report = eng.run()
    assert report.status == "partial" and report.deposits_posted > 0 and report.consumptions_posted > 0
    errors = {e["record"]: e for e in report.errors if e["stage"] == "post"}
    assert set(errors) == {
        f"fxiaoke:PrepayDetailObj:{early['_id']}", f"fxiaoke:PrepayDetailObj:{between['_id']}"
    }
    refused = errors[f"fxiaoke:PrepayDetailObj:{early['_id']}"]
    assert refused["field"] == "transaction_time"
    assert refused["reason"] == (
        f"consumption dated {_local(early['transaction_time'], '%Y-%m-%d %H:%M')} Asia/Shanghai "
        "is before any "
        f"deposit available then (first deposit {_local(good[one][0]['payment_time'], '%Y-%m-%d')}); "
        "correct the date in the CRM")
    short = errors[f"fxiaoke:PrepayDetailObj:{between['_id']}"]
    assert (short["field"] == "transaction_time"
            and f"only {first['payment_amount']} CNY was available then" in short["reason"]
            and f"next deposit is dated {_local(second['payment_time'], '%Y-%m-%d')}" in short["reason"])
    eng.clock.advance(minutes=5)
    again = eng.run()  # retried from the stored payload, still refused, recorded once per run
    assert [e["record"] for e in again.errors if e["stage"] == "post"].count(refused["record"]) == 1
    with eng.engine.connect() as conn:
        row = conn.execute(select(t.errors).where(t.errors.c.record == refused["record"])).one()
    assert row.attempts == 2 and row.resolved_at is None and row.field == "transaction_time"
    store.update("PrepayDetailObj", early["_id"],
                 {"transaction_time": good[one][0]["payment_time"] + 86_400_000}, admin)
    eng.clock.advance(minutes=5)
    fixed = eng.run()
    assert fixed.consumptions_posted == 1
    with eng.engine.connect() as conn:
        assert conn.execute(select(
            t.errors.c.resolved_at).where(t.errors.c.record == refused["record"])).scalar()


def test_edit_or_void_of_a_partly_spent_payment_posts_the_difference(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    store, admin = app.store, app.credentials.open_user_id
    eng.run()
    spending = {r.get("customer_id") for r in store.table("PrepayDetailObj").rows.values()
                if r.get("record_type") != "income_record_type__c"}
    with eng.engine.connect() as conn:
        posted = {r.crm_id: r for r in conn.execute(select(t.items).where(t.items.c.kind == "payment",
                                                                           t.items.c.status == "posted"))}
    pays = [r for r in store.table("PaymentObj").rows.values()
            if r["_id"] in posted and r.get("account_id") in spending]
    counts = Counter(p["account_id"] for p in pays)
    raised, cut = [p for p in pays if counts[p["account_id"]] == 1][:2]  # one payment each: surely drawn on
    voided = [p for p in pays if counts[p["account_id"]] == 1][2]
    before = _balances(eng.engine)
    key = "fxiaoke:AccountObj:{}".format
    store.update("PaymentObj", raised["_id"],
                 {"payment_amount": str(Decimal(raised["payment_amount"]) + 100)}, admin)
    store.update("PaymentObj", cut["_id"], {"payment_amount": str(Decimal(cut["payment_amount"]) - 5)}, admin)
    store.set_life_status("PaymentObj", voided["_id"], "invalid", admin)
    eng.clock.advance(minutes=5)
    report = eng.run()
    mine = [e for e in report.errors if e["record"].endswith((raised["_id"], cut["_id"], voided["_id"]))]
    after = _balances(eng.engine)
    assert after[key(raised["account_id"])] == before[key(raised["account_id"])] + 100
    assert after[key(cut["account_id"])] == before[key(cut["account_id"])] - 5
    spent = Decimal(voided["payment_amount"]) - before[key(voided["account_id"])]
    assert after[key(voided["account_id"])] == 0  # all that was left is taken back ...
    assert [(e["record"], e["field"], e["stage"]) for e in mine] == [
        (f"fxiaoke:PaymentObj:{voided['_id']}", "amount", "correction")]  # ... and the spent part is reported
    assert f"{spent} CNY of the difference was already spent" in mine[0]["reason"]
    with eng.engine.connect() as conn:
        open_flags = {(r.customer_id, r.code) for r in conn.execute(select(t.flags).where(
            t.flags.c.cleared_at.is_(None)))}
        items = {r.crm_id: r for r in conn.execute(select(t.items).where(t.items.c.kind == "payment"))}
    assert (key(raised["account_id"]), "payment_changed") in open_flags
    assert (key(voided["account_id"]), "payment_deleted") in open_flags
    assert Decimal(items[raised["_id"]].amount) == Decimal(raised["payment_amount"]) + 100
    assert len(__import__("json").loads(
        items[raised["_id"]].entry_ids)) == 2  # the deposit and the difference
    store.update("PaymentObj", raised["_id"], {"payment_amount": str(Decimal(raised["payment_amount"]) + 40)},
                 admin)
    eng.clock.advance(minutes=5)
    eng.run()  # a second edit posts the difference from the last posted amount
    assert _balances(eng.engine)[key(raised["account_id"])] == before[key(raised["account_id"])] + 40
    eng.clock.advance(minutes=5)
    quiet = eng.run()
    assert quiet.deposits_posted == 0 and quiet.reversals_posted == 0
    # Cut a payment by 10 more than the balance holds (no credit line): the shortfall is reported, then
    # resolved when the cut is undone.
    ledger = Ledger(eng.engine)
    singles = [p for p in pays if counts[p["account_id"]] == 1][3:]
    spare = next(p for p in singles if ledger.balance(key(p["account_id"]), "CNY")[0].credit_limit == 0)
    amount = Decimal(spare["payment_amount"])
    held = ledger.balance(key(spare["account_id"]), "CNY")[0].available
    assert held is not None and amount - held - 10 > 0
    store.update("PaymentObj", spare["_id"], {"payment_amount": str(amount - held - 10)}, admin)
    eng.clock.advance(minutes=5)
    short = eng.run()
    mine = [e for e in short.errors if e["record"].endswith(spare["_id"])]
    assert [e["stage"] for e in mine] == ["correction"] and "10.00 CNY of the difference" in mine[0]["reason"]
    assert ledger.balance(key(spare["account_id"]), "CNY")[0].balance == 0
    store.update("PaymentObj", spare["_id"], {"payment_amount": str(amount)}, admin)
    eng.clock.advance(minutes=5)
    eng.run()
    with eng.engine.connect() as conn:
        row = conn.execute(select(t.errors).where(t.errors.c.record == f"fxiaoke:PaymentObj:{spare['_id']}",
                                                  t.errors.c.stage == "correction")).one()
    assert row.resolved_at is not None
