"""End to end against the Zoho sandbox (in-process): postings, edits, deletes, read-back, outbox, dry run."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from helpers import Clock, zoho_engine
from sqlalchemy import select

from connector.ledger import Ledger
from connector.sync import tables as t


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
    received = [
        p for p in sb.org.modules["Prepaid_Payments"].records.values()
        if (p.get("Account") or {}).get("id") and p.get("Payment_Status") == "Received" and p.get("Currency")
    ]
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
    # the mapping check's metadata read and one (empty) read per stream; no `/deleted`
    assert quiet.api_calls == 6


def calls_by_type(eng: Any) -> Counter[str]:
    """API calls the engine's adapter has made so far, by call type (`read`, `deleted`, `write`, ...)."""
    return Counter({k.removesuffix(":calls"): v for k, v in eng.adapter.usage().by_type.items()
                    if k.endswith(":calls")})


def test_no_change_run_after_a_deletion_check_reads_once_per_stream(zoho: tuple) -> None:
    eng, _sb, clock = zoho
    eng.run()
    clock.advance(minutes=5)
    eng.run()  # echoes of our own writes
    clock.advance(minutes=61)
    before = calls_by_type(eng)
    checked = eng.run()
    spent = calls_by_type(eng) - before
    assert spent["deleted"] == 3 and checked.reversals_posted == 0  # (the hour also expired the access token)
    clock.advance(minutes=5)
    before = calls_by_type(eng)
    quiet = eng.run()
    spent = calls_by_type(eng) - before
    assert dict(spent) == {"metadata": 3, "read": 3} and quiet.api_calls == 6 and quiet.write_calls == 0
    with eng.engine.connect() as conn:
        cursors = dict(conn.execute(select(t.cursors.c.stream, t.cursors.c.cursor_at)).all())
    assert {cursors[f"{name}:deleted"] for name in ("customers", "contracts", "payments")} == \
        {checked.started_at}  # the check's cursor stays where the check ran


def test_full_run_and_missing_deletion_cursor_read_deletions_since_the_last_check(zoho: tuple) -> None:
    eng, sb, clock = zoho
    eng.run()
    pays = sb.org.modules["Prepaid_Payments"]
    posted = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
    clock.advance(minutes=5)
    sb.org.delete(pays, posted[0]["id"])
    clock.advance(minutes=5)
    full = eng.run(full=True)  # re-reads everything and, within the interval, still reads `/deleted`
    assert full.reversals_posted == 1 and ledger_balances(eng.engine) == live_payments(sb)
    with eng.engine.begin() as conn:  # as a database from before deletion cursors existed
        conn.execute(t.cursors.delete().where(t.cursors.c.stream.like("%:deleted")))
    clock.advance(minutes=5)
    sb.org.delete(pays, posted[1]["id"])
    clock.advance(minutes=5)
    before = calls_by_type(eng)
    upgraded = eng.run()  # no deletion cursor: check from the stream's cursor
    assert (calls_by_type(eng) - before)["deleted"] == 3 and upgraded.reversals_posted == 1
    assert ledger_balances(eng.engine) == live_payments(sb)


def test_interval_zero_checks_deletions_every_run(tmp_path: object) -> None:
    clock = Clock()
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z0.db", seed=40, clock=clock, deletion_check=timedelta(0))
    before = calls_by_type(eng)
    eng.run()
    assert (calls_by_type(eng) - before)["deleted"] == 0  # a first full read has nothing to delete
    for _ in range(2):
        clock.advance(minutes=1)
        before = calls_by_type(eng)
        eng.run()
        spent = calls_by_type(eng) - before
        assert spent["deleted"] == 3 and spent["read"] == 3


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
    edits = eng.run()  # the edit shows in the incremental read; `/deleted` is not due before 60 minutes
    assert edits.reversals_posted == 1 and edits.deposits_posted == 1
    assert ledger_balances(eng.engine) != live_payments(sb)
    clock.advance(minutes=55)
    report = eng.run()  # 60 minutes after the full run: deletions are checked
    assert report.reversals_posted == 1 and report.deposits_posted == 0
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
