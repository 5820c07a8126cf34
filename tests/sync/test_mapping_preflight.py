"""Every run starts by checking the mapping against the CRM's field metadata; a misfit stops it before it
reads or writes anything (exit 2, the `mappings check --online` message), on both sandboxes."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import func, select
from typer.testing import CliRunner

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli import app
from connector.config import Connection, LoadedSettings, Settings
from connector.mapping import parse_mapping
from connector.mapping.models import Mapping
from connector.ops.alerts import decide, load_alerts
from connector.ops.scheduler import Worker
from connector.sync import SyncEngine
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.sync.checks import modules

runner = CliRunner()
TYPO = {"zoho": ("contracts", "prepay_amount", "Prepay_Amout", "Prepay_Amount"),
        "fxiaoke": ("contracts", "prepay_amount", "prepay_amout__c", "prepay_amount__c")}


def edited(m: Mapping, section: str, attr: str, **changes: Any) -> Mapping:
    """The mapping with one field of `section` changed (as an admin's edit of the file would)."""
    data = m.model_dump(mode="json", exclude_none=True)
    data[section]["fields"][attr].update(changes)
    return parse_mapping(data, "edited.yaml")


def crm_snapshot(crm: str, sandbox: Any) -> dict[str, Any]:
    """Every record of every module/object the sandbox holds."""
    if crm == "zoho":
        return {name: copy.deepcopy(mod.records) for name, mod in sandbox.org.modules.items()}
    return {name: copy.deepcopy(table.rows) for name, table in sandbox.store.tables.items()}


def established(crm: str, tmp_path: Path) -> tuple[SyncEngine, Any, Callable[..., None]]:
    """An engine on a sandbox after its first full sync (fields written, flags and tasks open)."""
    if crm == "zoho":
        clock = Clock()
        eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
        advance = clock.advance
    else:
        eng, sb = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40)
        advance = eng.clock.advance  # type: ignore[attr-defined]
    first = eng.run()
    assert first.status == "ok" and first.records_written > 0
    advance(minutes=5)
    return eng, sb, advance


def open_flags(eng: SyncEngine) -> int:
    with eng.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(t.flags).where(
                t.flags.c.cleared_at.is_(None))).scalar_one())


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_mistyped_field_stops_the_run_before_it_reads_or_writes(crm: str, tmp_path: Path) -> None:
    eng, sb, _advance = established(crm, tmp_path)
    section, attr, typo, right = TYPO[crm]
    eng.mapping = edited(eng.mapping, section, attr, crm=typo)
    before, flags = crm_snapshot(crm, sb), open_flags(eng)
    spent = Counter(eng.adapter.usage().by_type)
    report = eng.run(full=True)
    assert report.status == "failed" and report.pulled == {}
    assert report.problems == [{"path": f"{section}.fields.{attr}.crm",
                                "reason": f"{eng.mapping.contracts.module} has no field {typo!r} "
                                          f"(did you mean {right!r}?)"}]
    assert crm_snapshot(crm, sb) == before and open_flags(eng) == flags  # nothing written, nothing cleared
    spent = Counter(eng.adapter.usage().by_type) - spent
    metadata = "metadata:calls" if crm == "zoho" else "/cgi/crm/v2/object/describe"
    # the metadata reads only, one per module (plus a token refresh on Fxiaoke, whose token the 5 minutes
    # aged)
    assert spent[metadata] == len(modules(
        eng.mapping)) and set(spent) <= {metadata, "metadata:credits", "token"}
    with eng.engine.connect() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == report.run_id)).one()
    assert row.status == "failed" and f"has no field {typo!r}" in row.reason
    assert "stopped before reading or writing anything" in row.reason


def test_a_field_of_the_wrong_type_stops_the_run(tmp_path: Path) -> None:
    eng, sb, _advance = established("zoho", tmp_path)
    eng.mapping = edited(eng.mapping, "contracts", "due_date", type="money")
    before = crm_snapshot("zoho", sb)
    report = eng.run()
    assert report.status == "failed" and report.pulled == {}
    assert report.problems == [{"path": "contracts.fields.due_date.type",
                                "reason": "Deals.Closing_Date is date; cannot hold money"}]
    assert crm_snapshot("zoho", sb) == before


def metadata_calls(eng: SyncEngine) -> int:
    return Counter({k: v for k, v in eng.adapter.usage().by_type.items()})["metadata:calls"]


def test_metadata_is_read_once_per_module_each_run_and_charged_to_the_budget(tmp_path: Path) -> None:
    clock = Clock()
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=clock)
    eng.budget = ApiBudget(eng.engine, "zoho", limit=None, unit="calls", tz=UTC, clock=clock)
    first = eng.run()  # writes every customer: the writes use the metadata the check read
    assert first.status == "ok" and first.write_calls > 0
    assert metadata_calls(eng) == 3
    assert eng.budget.used() == first.api_calls
    clock.advance(minutes=5)
    second = eng.run()  # a new run reads it again (an admin may have changed a field meanwhile)
    assert metadata_calls(eng) == 6 and eng.budget.used() == first.api_calls + second.api_calls
    clock.advance(minutes=5)
    eng.budget = ApiBudget(eng.engine, "zoho", limit=eng.budget.used() + 2, unit="calls", tz=UTC, clock=clock)
    short = eng.run()  # the check's three metadata reads do not fit in what is left today
    assert short.status == "budget" and short.pulled == {} and metadata_calls(eng) == 8


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_dry_run_makes_the_same_check(crm: str, tmp_path: Path) -> None:
    eng, sb, _advance = established(crm, tmp_path)
    section, attr, typo, _right = TYPO[crm]
    eng.mapping = edited(eng.mapping, section, attr, crm=typo)
    before = crm_snapshot(crm, sb)
    plan = eng.run(dry_run=True, full=True)
    assert plan.dry_run and plan.status == "failed" and plan.pulled == {}
    assert [p["path"] for p in plan.problems] == [f"{section}.fields.{attr}.crm"]
    assert crm_snapshot(crm, sb) == before


def test_a_scheduled_run_fails_with_the_reason_and_alerts(tmp_path: Path) -> None:
    eng, sb, advance = established("zoho", tmp_path)
    eng.mapping = edited(eng.mapping, "contracts", "prepay_amount", crm="Prepay_Amout")
    conn = Connection(crm="zoho", mapping="m.yaml", schedule="every 15 minutes")
    loaded = LoadedSettings(settings=Settings(database_url=str(eng.engine.url), connections={"zoho": conn}),
                            path=tmp_path / "prepaid-sync.toml")
    before = crm_snapshot("zoho", sb)
    worker = Worker(loaded, eng.engine, worker_id="w1", clock=eng.clock, build=lambda name: eng)
    worker.book.prepare(eng.clock())  # it has run before: due at the next fire time
    advance(minutes=15)
    [outcome] = worker.run_once()
    assert outcome.status == "failed" and "has no field 'Prepay_Amout'" in outcome.reason
    assert crm_snapshot("zoho", sb) == before
    [alert] = decide(eng.engine, "zoho", outcome.run_id or 0, load_alerts({}))
    assert alert.event == "run_failed" and "has no field 'Prepay_Amout'" in alert.text


def test_cli_sync_run_and_dry_run_exit_2_with_the_check_message(tmp_path: Path, clean_env: None) -> None:
    with ZohoSandbox(seed=20) as sb:
        res = runner.invoke(app,
                            ["init", "--crm", "zoho", "--sandbox", sb.api_domain, "--dir",
                             str(tmp_path)])
        assert res.exit_code == 0, res.output
        cfg = str(tmp_path / "prepaid-sync.toml")
        assert runner.invoke(app, ["sync", "run", "--config", cfg, "--json"]).exit_code == 0
        mapping = tmp_path / "mappings" / "zoho.yaml"
        mapping.write_text(mapping.read_text().replace("{crm: Prepay_Amount,", "{crm: Prepay_Amout,"))
        before = {name: copy.deepcopy(mod.records) for name, mod in sb.org.modules.items()}
        for extra in ([], ["--dry-run"]):
            res = runner.invoke(app, ["sync", "run", "--config", cfg, "--full", *extra])
            assert res.exit_code == 2, res.output
            text = " ".join(res.stderr.split())
            assert "stopped before reading or writing anything" in text
            assert "contracts.fields.prepay_amount.crm: Deals has no field 'Prepay_Amout' (did you mean " \
                   "'Prepay_Amount'?)" in text
            assert "Traceback" not in res.output
        as_json = runner.invoke(app, ["sync", "run", "--config", cfg, "--json"])
        assert as_json.exit_code == 2 and json.loads(as_json.stdout)["problems"][0]["path"] == \
            "contracts.fields.prepay_amount.crm"
        assert {name: mod.records for name, mod in sb.org.modules.items()} == before
        runs = runner.invoke(app, ["runs", "--config", cfg, "--json"])
    listed = json.loads(runs.stdout)["runs"]
    assert listed[0]["status"] == "failed" and "has no field 'Prepay_Amout'" in listed[0]["reason"]
