"""The mass-change guard: a run that would change too much at once is held before any CRM write, says what it
would have done, and goes through only with `--allow-mass-change` (or the connection's settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crm_worlds import crm_snapshot, end_contracts, overdue_customers, overdue_world
from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import func, select
from typer.testing import CliRunner

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli import app
from connector.config import Connection, LoadedSettings, MassChangeGuard, Settings, load_settings
from connector.errors import ConfigError
from connector.mapping import parse_mapping
from connector.ops.alerts import decide, load_alerts
from connector.ops.scheduler import Worker
from connector.ops.status import connection_status
from connector.sync import SyncEngine
from connector.sync import runner as sync_runner
from connector.sync import tables as t

runner = CliRunner()


def counts(eng: SyncEngine) -> tuple[int, int]:
    """(open flags, outbox rows) in the connection's database."""
    with eng.engine.connect() as conn:
        flags = conn.execute(select(func.count()).select_from(t.flags).where(t.flags.c.cleared_at.is_(None)))
        outbox = conn.execute(select(func.count()).select_from(t.outbox))
        return int(flags.scalar_one()), int(outbox.scalar_one())


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_run_that_would_close_most_open_tasks_is_held_until_allowed(crm: str, tmp_path: Path) -> None:
    eng, sb, advance, _customer, _contracts = overdue_world(crm, tmp_path)
    overdue = overdue_customers(eng)
    assert end_contracts(crm, sb, eng, overdue) >= len(overdue)  # a bulk edit ends every overdue contract
    advance(minutes=5)
    before, kept = crm_snapshot(crm, sb), counts(eng)
    held = eng.run()
    assert held.status == "held"
    assert crm_snapshot(crm,
                        sb) == before and counts(eng) == kept  # no CRM write, no flag cleared, nothing queued
    assert held.records_written == held.tasks_closed == held.flags_cleared == 0
    guard = held.guard or {}
    assert guard["held"] and guard["tasks_closed"] == len(overdue) and guard["open_tasks"] >= len(overdue)
    assert f"close {len(overdue)} of {guard['open_tasks']} open CRM tasks (" in held.reason
    assert ("limit 25%" in held.reason and "For example: " in held.reason
            and "clear overdue and close its task" in held.reason and "--allow-mass-change" in held.reason)
    with eng.engine.connect() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == held.run_id)).one()
    assert row.status == "held" and row.reason == held.reason
    advance(minutes=5)
    again = eng.run()  # nothing changed: held again, still nothing written
    assert again.status == "held" and crm_snapshot(crm, sb) == before
    advance(minutes=5)
    allowed = eng.run(allow_mass_change=True)
    assert allowed.status == "ok" and allowed.tasks_closed == len(overdue)
    assert overdue_customers(eng) == set() and allowed.guard is not None and not allowed.guard["held"]
    advance(minutes=5)
    assert eng.run().status == "ok"  # the change is done: the next run has nothing to hold


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_one_letter_typo_changes_nothing_in_the_crm_even_past_the_metadata_check(
        crm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eng, sb, advance, _customer, _contracts = overdue_world(crm, tmp_path)
    monkeypatch.setattr(sync_runner, "preflight", lambda adapter, mapping: None)  # as if the check had passed
    data = eng.mapping.model_dump(mode="json", exclude_none=True)
    field = data["contracts"]["fields"]["prepay_amount"]
    field["crm"] = field["crm"].replace("Amount", "Amout").replace("amount", "amout")
    eng.mapping = parse_mapping(data, "typo.yaml")
    before, kept = crm_snapshot(crm, sb), counts(eng)
    report = eng.run(full=True)
    assert crm_snapshot(crm, sb) == before and counts(eng)[0] == kept[0]
    assert report.flags_cleared == report.tasks_closed == report.records_written == 0


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_the_first_full_sync_is_never_held(crm: str, tmp_path: Path) -> None:
    if crm == "zoho":
        eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=Clock())
    else:
        eng, _sb = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40)
    eng.guard = MassChangeGuard(max_customers_changed_pct=1, min_count=1)
    first = eng.run()  # writes every customer: nothing was written before
    assert first.status == "ok" and first.records_written >= 30  # nearly every one of the 40 customers
    assert first.guard is None


def test_settings_let_it_through_and_a_dry_run_reports_what_would_be_held(tmp_path: Path) -> None:
    eng, sb, advance, _customer, _contracts = overdue_world("fxiaoke", tmp_path)
    overdue = overdue_customers(eng)
    end_contracts("fxiaoke", sb, eng, overdue)
    advance(minutes=5)
    before = crm_snapshot("fxiaoke", sb)
    plan = eng.run(dry_run=True)
    assert plan.dry_run and plan.status == "ok" and plan.guard is not None and plan.tasks_closed == len(
        overdue)
    assert crm_snapshot("fxiaoke", sb) == before
    seen = plan.guard
    most = max(seen["customers_changed"], seen["flags_cleared"], seen["tasks_closed"])
    eng.guard = MassChangeGuard(min_count=most + 1)  # fewer changes of a kind than min_count never hold
    assert eng.run(dry_run=True).guard is None
    eng.guard = MassChangeGuard(max_flags_cleared_pct=100, max_tasks_closed_pct=100)
    assert eng.run(dry_run=True).guard is None
    eng.guard = MassChangeGuard(enabled=False)
    done = eng.run()
    assert done.status == "ok" and done.tasks_closed == len(overdue) and done.guard is None


def test_guard_settings_are_validated_with_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "prepaid-sync.toml"
    base = '[connections.z]\ncrm = "zoho"\nmapping = "m.yaml"\n[connections.z.mass_change_guard]\n'
    cfg.write_text(base + "max_tasks_closed_pct = 40\nmin_count = 3\n")
    guard = load_settings(cfg).settings.connections["z"].mass_change_guard
    assert guard == MassChangeGuard(max_tasks_closed_pct=40, min_count=3)
    cfg.write_text(base + "max_task_closed_pct = 40\n")
    with pytest.raises(
            ConfigError, match=r"mass_change_guard\.max_task_closed_pct: unknown key \(did you mean "
            r"'max_tasks_closed_pct'\?\)"):
        load_settings(cfg)
    cfg.write_text(base + "max_flags_cleared_pct = 250\n")
    with pytest.raises(
            ConfigError, match=r"mass_change_guard\.max_flags_cleared_pct: Input should be less than or "
            r"equal to 100"):
        load_settings(cfg)
    assert Connection(crm="zoho", mapping="m.yaml").mass_change_guard == MassChangeGuard()


def test_a_held_scheduled_run_alerts_once_and_waits_for_a_person(tmp_path: Path) -> None:
    eng, sb, advance, _customer, _contracts = overdue_world("zoho", tmp_path)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(json.dumps(eng.mapping.model_dump(mode="json", exclude_none=True)))  # YAML reads JSON
    conn = Connection(crm="zoho", mapping=str(mapping), schedule="every 15 minutes")
    loaded = LoadedSettings(settings=Settings(database_url=str(eng.engine.url), connections={"zoho": conn}),
                            path=tmp_path / "prepaid-sync.toml")
    worker = Worker(loaded, eng.engine, worker_id="w1", clock=eng.clock, build=lambda name: eng)
    worker.book.prepare(eng.clock())
    end_contracts("zoho", sb, eng, overdue_customers(eng))
    before = crm_snapshot("zoho", sb)
    advance(minutes=15)
    [outcome] = worker.run_once()
    assert outcome.status == "held" and crm_snapshot("zoho", sb) == before
    [alert] = decide(eng.engine, "zoho", outcome.run_id or 0, load_alerts({}))
    assert alert.event == "run_failed" and "close" in alert.text and "--allow-mass-change" in alert.text
    status = connection_status(eng.engine, loaded, "zoho", eng.clock())
    assert status.last_finished is not None and status.last_finished.status == "held"
    assert status.consecutive_failures == 1
    for _ in range(3):  # due again and again: no run (no second alert) until a person acts
        advance(minutes=15)
        assert worker.run_once() == []
    with eng.engine.connect() as db:
        assert db.execute(select(func.count()).select_from(t.runs)).scalar_one() == outcome.run_id
    advance(minutes=1)
    assert eng.run(allow_mass_change=True).status == "ok"  # the person's decision
    advance(minutes=5)  # past the next fire time (the runs above fell 10 minutes after theirs)
    [resumed] = worker.run_once()
    assert resumed.status == "ok" and crm_snapshot("zoho", sb) != before


def test_a_changed_guard_setting_lets_the_schedule_try_again(tmp_path: Path) -> None:
    eng, sb, advance, _customer, _contracts = overdue_world("zoho", tmp_path)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(json.dumps(eng.mapping.model_dump(mode="json", exclude_none=True)))

    def loaded(guard: MassChangeGuard) -> LoadedSettings:
        conn = Connection(crm="zoho", mapping=str(mapping), schedule="every 15 minutes",
                          mass_change_guard=guard)
        return LoadedSettings(settings=Settings(database_url=str(eng.engine.url), connections={"zoho": conn}),
                              path=tmp_path / "prepaid-sync.toml")

    worker = Worker(loaded(MassChangeGuard()), eng.engine, worker_id="w1", clock=eng.clock,
                    build=lambda n: eng)
    worker.book.prepare(eng.clock())
    end_contracts("zoho", sb, eng, overdue_customers(eng))
    advance(minutes=15)
    assert [o.status for o in worker.run_once()] == ["held"]
    advance(minutes=15)
    assert worker.run_once() == []
    relaxed = MassChangeGuard(max_flags_cleared_pct=100, max_tasks_closed_pct=100)
    eng.guard = relaxed  # what build_sync_engine makes of the edited config
    worker = Worker(loaded(relaxed), eng.engine, worker_id="w1", clock=eng.clock, build=lambda n: eng)
    advance(minutes=15)
    assert [o.status for o in worker.run_once()] == ["ok"]


def test_cli_held_run_exits_3_says_why_and_status_shows_it(tmp_path: Path, clean_env: None) -> None:
    with ZohoSandbox(seed=40) as sb:
        res = runner.invoke(app,
                            ["init", "--crm", "zoho", "--sandbox", sb.api_domain, "--dir",
                             str(tmp_path)])
        assert res.exit_code == 0, res.output
        cfg = str(tmp_path / "prepaid-sync.toml")
        assert runner.invoke(app, ["sync", "run", "--config", cfg, "--json"]).exit_code == 0
        deals = sb.org.modules["Deals"]
        for rec in [r for r in deals.records.values() if (r.get("Account_Name") or {}).get("id")][:12]:
            sb.org.update(deals, rec["id"], {"Prepay_Amount": "900000", "Closing_Date": "2025-12-01"})
        opened = runner.invoke(app, ["sync", "run", "--config", cfg, "--json"])
        assert opened.exit_code == 0 and json.loads(opened.stdout)["tasks_created"] >= 10, opened.output
        for rec in list(deals.records.values()):
            sb.org.update(deals, rec["id"], {"Stage": "Closed Lost"})
        before = crm_snapshot("zoho", sb)
        held = runner.invoke(app, ["sync", "run", "--config", cfg])
        assert held.exit_code == 3, held.output
        text = " ".join(held.stdout.split())
        assert "sync run: held" in text and "held by the mass-change guard: this run would" in text
        assert "open CRM tasks" in text and "--allow-mass-change" in text
        plan = runner.invoke(app, ["sync", "run", "--config", cfg, "--dry-run"])
        assert plan.exit_code == 0 and "a real run would be held by the mass-change guard" in \
            " ".join(plan.stdout.split())
        assert crm_snapshot("zoho", sb) == before
        status = runner.invoke(app, ["status", "--config", cfg])
        assert "waits for a person" in " ".join(status.stdout.split()), status.output
        runs = json.loads(runner.invoke(app, ["runs", "--config", cfg, "--json"]).stdout)["runs"]
        assert runs[0]["status"] == "held" and "mass-change guard" in runs[0]["reason"]
        done = runner.invoke(app, ["sync", "run", "--config", cfg, "--allow-mass-change", "--json"])
        assert done.exit_code == 0 and json.loads(done.stdout)["tasks_closed"] >= 10, done.output
