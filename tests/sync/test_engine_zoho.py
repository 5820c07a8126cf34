"""End to end against the Zoho sandbox (in-process): postings, edits, deletes, read-back, outbox, dry run."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from connector.ledger import Ledger
from connector.sync import tables as t
from helpers import Clock, zoho_engine


def live_payments(sb: object) -> dict[str, Decimal]:
    """Expected ledger balance per customer key from the CRM's Received payments (with a currency)."""
    org = sb.org  # type: ignore[attr-defined]
    out: dict[str, Decimal] = {}
    for p in org.modules["Prepaid_Payments"].records.values():
        acc = (p.get("Account") or {}).get("id")
        if acc and p.get("Payment_Status") == "Received" and p.get("Currency"):
            key = f"zoho:Accounts:{acc}"
            out[key] = out.get(key, Decimal(0)) + Decimal(str(p["Amount"]))
    return out


def ledger_balances(engine: object) -> dict[str, Decimal]:
    """Ledger balance per customer (all currencies summed; the sandbox keeps one currency per account)."""
    out: dict[str, Decimal] = {}
    for view in Ledger(engine).accounts():  # type: ignore[arg-type]
        out[view.customer] = out.get(view.customer, Decimal(0)) + view.balance
    return {k: v for k, v in out.items() if v}


def task_markers(sb: object) -> Counter[str]:
    """How many CRM tasks carry each marker."""
    tasks = sb.org.modules["Tasks"].records.values()  # type: ignore[attr-defined]
    return Counter(r.get("Prepaid_Sync_Marker") for r in tasks if r.get("Prepaid_Sync_Marker"))


@pytest.fixture
def zoho(tmp_path: object) -> tuple:
    clock = Clock()
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
    return eng, sb, clock


def test_full_sync_posts_each_payment_once_and_settles(zoho: tuple) -> None:
    eng, sb, clock = zoho
    first = eng.run()
    received = [p for p in sb.org.modules["Prepaid_Payments"].records.values()
                if (p.get("Account") or {}).get("id") and p.get("Payment_Status") == "Received" and p.get("Currency")]
    assert first.status == "ok" and first.deposits_posted == len(received)
    assert ledger_balances(eng.engine) == live_payments(sb)
    assert first.records_written == len(sb.org.modules["Accounts"].records)
    balances = {r["id"]: r.get("Prepaid_Balance") for r in sb.org.modules["Accounts"].records.values()}
    for key, amount in live_payments(sb).items():
        assert Decimal(str(balances[key.rsplit(":", 1)[1]])) == amount
    clock.advance(minutes=5)
    echo = eng.run()  # our own writes come back as changes: nothing to do
    assert echo.records_written == 0 and echo.deposits_posted == 0 and echo.tasks_created == 0
    clock.advance(minutes=5)
    quiet = eng.run()
    assert quiet.pulled == {"customers": 0, "contracts": 0, "payments": 0}
    assert quiet.records_written == 0 and quiet.write_calls == 0
    assert quiet.api_calls == 6  # per stream: one (empty) read and one deleted-records check


def test_edit_and_delete_reverse_and_flag(zoho: tuple) -> None:
    eng, sb, clock = zoho
    eng.run()
    org = sb.org
    pays = org.modules["Prepaid_Payments"]
    posted = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
    edited, deleted = posted[0], posted[1]
    clock.advance(minutes=5)
    org.update(pays, edited["id"], {"Amount": Decimal(str(edited["Amount"])) + 7})
    org.delete(pays, deleted["id"])
    clock.advance(minutes=5)
    report = eng.run()
    assert report.reversals_posted == 2 and report.deposits_posted == 1
    assert ledger_balances(eng.engine) == live_payments(sb)
    with eng.engine.connect() as conn:
        codes = {r.code for r in conn.execute(select(t.flags).where(t.flags.c.cleared_at.is_(None)))}
    assert {"payment_changed", "payment_deleted"} <= codes
    deleted_key = f"ps:payment_deleted:zoho:Accounts:{deleted['Account']['id']}"
    assert any(m.startswith(deleted_key) for m in task_markers(sb))
    clock.advance(minutes=5)
    again = eng.run()
    assert again.reversals_posted == 0 and again.deposits_posted == 0 and again.tasks_created == 0
    assert max(task_markers(sb).values()) == 1
    clock.advance(days=20)  # event flags expire after event_flag_days: their tasks close
    later = eng.run()
    assert later.tasks_closed >= 1
    open_tasks = [r for r in org.modules["Tasks"].records.values()
                  if str(r.get("Prepaid_Sync_Marker", "")).startswith(deleted_key)]
    assert open_tasks and all(r["Status"] == "Completed" for r in open_tasks)


def test_manual_edit_is_restored_flagged_and_tasked_once(zoho: tuple) -> None:
    eng, sb, clock = zoho
    eng.run()
    org = sb.org
    acc_id, acc = next((k, r) for k, r in org.modules["Accounts"].records.items() if r.get("Prepaid_Balance"))
    right = Decimal(str(acc["Prepaid_Balance"]))
    clock.advance(minutes=5)
    org.update(org.modules["Accounts"], acc_id, {"Prepaid_Balance": Decimal("123456.00")})
    clock.advance(minutes=5)
    report = eng.run()
    assert Decimal(str(org.modules["Accounts"].records[acc_id]["Prepaid_Balance"])) == right
    assert "manual_edit" in org.modules["Accounts"].records[acc_id]["Prepaid_Flags"]
    with eng.engine.connect() as conn:
        flag = conn.execute(select(t.flags).where(t.flags.c.code == "manual_edit")).one()
    assert "123456" in flag.detail and str(right.normalize()) in flag.detail
    assert report.tasks_created == 1
    for _ in range(2):
        clock.advance(minutes=5)
        assert eng.run().records_written == 0
    assert sum(1 for m in task_markers(sb) if m.startswith("ps:manual_edit")) == 1


def test_outbox_survives_a_crash_between_send_and_answer(zoho: tuple) -> None:
    eng, sb, clock = zoho
    real = eng.adapter.write_fields
    calls: list[int] = []

    def crash_after_send(module: str, updates: list) -> list:
        real(module, updates)
        calls.append(len(updates))
        raise SystemExit("killed after the CRM applied the batch")

    eng.adapter.write_fields = crash_after_send  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        eng.run()
    eng.adapter.write_fields = real  # type: ignore[method-assign]
    with eng.engine.connect() as conn:
        assert conn.execute(select(t.outbox).where(t.outbox.c.status == "sending")).all()
        conn.execute(t.locks.delete())  # the dead process's lock (a real crash frees it by pid check)
        conn.commit()
    clock.advance(minutes=5)
    report = eng.run()
    assert report.status == "ok" and report.records_written >= calls[0]
    with eng.engine.connect() as conn:
        statuses = {r.status for r in conn.execute(select(t.outbox))}
    assert statuses <= {"ok", "superseded"}
    assert ledger_balances(eng.engine) == live_payments(sb)
    assert all(n == 1 for n in task_markers(sb).values())


def test_dry_run_changes_nothing_and_shows_the_plan(zoho: tuple) -> None:
    eng, sb, clock = zoho
    before = {k: dict(v) for k, v in sb.org.modules["Accounts"].records.items()}
    plan = eng.run(dry_run=True)
    assert plan.dry_run and plan.deposits_posted > 0 and plan.records_written > 0
    some = next(iter(plan.changes.values()))
    assert some["postings"] or some["fields"]
    assert {k: dict(v) for k, v in sb.org.modules["Accounts"].records.items()} == before
    assert not list(Ledger(eng.engine).accounts())
    assert plan.to_dict()["changes"]


def test_second_run_is_refused_while_one_holds_the_lock(zoho: tuple) -> None:
    eng, _sb, _clock = zoho
    with eng.engine.begin() as conn:
        conn.execute(t.locks.insert().values(connection="zoho", run_id=99, pid=1, host="elsewhere",
                                             acquired_at=eng.clock()))
    from connector.sync.lock import RunLocked

    with pytest.raises(RunLocked, match="being synced by run 99"):
        eng.run()
