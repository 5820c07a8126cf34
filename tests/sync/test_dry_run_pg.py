"""`sync run --dry-run` on PostgreSQL: the plan is reported and the ledger, sync tables and CRM stay as they
were."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from helpers import Clock, zoho_engine
from sqlalchemy import inspect, text

pytestmark = pytest.mark.postgres


def snapshot(engine: Any) -> dict[str, list[str]]:
    """Every row of every table (the ledger's and the sync state's), in a comparable form."""
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
        return {n: sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{n}"'))) for n in names}


def crm(sb: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Every CRM record of the sandbox org."""
    return {name: {k: dict(v) for k, v in mod.records.items()} for name, mod in sb.org.modules.items()}


def test_dry_run_on_postgres_plans_and_changes_nothing(pg_url: str) -> None:
    clock = Clock()
    eng, sb = zoho_engine(pg_url, seed=40, clock=clock)
    empty = snapshot(eng.engine)
    plan = eng.run(dry_run=True)  # the first run planned on an empty database
    assert plan.dry_run and plan.status == "ok" and plan.deposits_posted > 0 and plan.records_written > 0
    assert snapshot(eng.engine) == empty
    first = eng.run()
    assert first.deposits_posted == plan.deposits_posted and first.records_written == plan.records_written
    org = sb.org
    pays, accounts = org.modules["Prepaid_Payments"], org.modules["Accounts"]
    posted = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
    edited, deleted = posted[0], posted[1]
    clock.advance(minutes=5)
    org.update(pays, edited["id"], {"Amount": Decimal(str(edited["Amount"])) + 7})
    org.delete(pays, deleted["id"])
    clock.advance(minutes=61)  # past the deletion check interval: this run reads `/deleted`
    before_db, before_crm = snapshot(eng.engine), crm(sb)
    plan = eng.run(dry_run=True)
    assert plan.status == "ok" and plan.reversals_posted == 2 and plan.deposits_posted == 1
    key = f"zoho:Accounts:{edited['Account']['id']}"
    assert plan.changes[key]["postings"] and "Prepaid_Balance" in plan.changes[key]["fields"]
    gone = f"zoho:Accounts:{deleted['Account']['id']}"
    assert any(task.startswith("payment_deleted") for task in plan.changes[gone]["tasks_open"])
    assert plan.tasks_created >= 1 and plan.api_calls > 0
    assert snapshot(eng.engine) == before_db  # ledger, sync state, outbox, runs: untouched
    assert crm(sb) == before_crm
    real = eng.run()  # the real run does what was planned
    assert (real.reversals_posted, real.deposits_posted, real.records_written, real.tasks_created) == \
        (plan.reversals_posted, plan.deposits_posted, plan.records_written, plan.tasks_created)
    assert Decimal(str(accounts.records[edited["Account"]["id"]]["Prepaid_Balance"])) != \
        Decimal(str(before_crm["Accounts"][edited["Account"]["id"]]["Prepaid_Balance"]))
