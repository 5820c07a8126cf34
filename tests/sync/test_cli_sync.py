"""CLI: demo, init against a running sandbox, sync run --json / --dry-run, mappings check, config errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli import app
from connector.config import load_settings

runner = CliRunner()
KEYS = {
    "status", "pulled", "deposits_posted", "records_written", "tasks_created", "tasks_closed", "api_calls",
    "errors"
}


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_demo_runs_offline_and_settles(crm: str, clean_env: None) -> None:
    result = runner.invoke(app, ["demo", "--crm", crm, "--customers", "25", "--json"])
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["full_sync"]["deposits_posted"] > 0 and doc["full_sync"]["records_written"] > 0
    inc = doc["incremental_sync"]
    assert inc["deposits_posted"] == 2 and inc["reversals_posted"] == 1 and inc["tasks_created"] >= 1
    assert doc["quiet_run"]["records_written"] == 0 and doc["quiet_run"]["tasks_created"] == 0
    assert KEYS <= set(inc)


def test_init_sandbox_then_sync_run(tmp_path: Path, clean_env: None) -> None:
    with ZohoSandbox(seed=30) as sb:
        res = runner.invoke(app,
                            ["init", "--crm", "zoho", "--sandbox", sb.api_domain, "--dir",
                             str(tmp_path)])
        assert res.exit_code == 0, res.stdout
        cfg = tmp_path / "prepaid-sync.toml"
        text = cfg.read_text()
        # names only, never values
        assert "ZOHO_CLIENT_SECRET" in text and sb.config.client_secret not in text
        assert sb.config.client_secret in (tmp_path / ".env").read_text()
        for var in ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN"):
            os.environ.pop(var, None)
        check = runner.invoke(app, ["mappings", "check", "--config", str(cfg), "--online", "--json"])
        assert check.exit_code == 0, check.stdout
        assert json.loads(check.stdout)["ok"] is True
        plan = runner.invoke(app, ["sync", "run", "--config", str(cfg), "--dry-run"])
        assert plan.exit_code == 0, plan.stdout
        assert "dry run" in plan.stdout and "ledger: deposit" in plan.stdout
        run = runner.invoke(app, ["sync", "run", "--config", str(cfg), "--json"])
        assert run.exit_code == 0, run.stdout
        doc = json.loads(run.stdout)
        assert KEYS <= set(doc) and doc["status"] == "ok" and doc["deposits_posted"] > 0
        assert sb.config.client_secret not in run.stdout + (run.stderr or "")


def test_config_errors_are_precise(tmp_path: Path) -> None:
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text(
        'database_url = "sqlite://"\n[connections.z]\ncrm = "zoho"\nmapping = "m.yaml"\nschedul = "x"\n')
    res = runner.invoke(app, ["sync", "run", "--config", str(cfg)])
    assert (res.exit_code == 2 and "connections.z.schedul" in res.stderr
            and "did you mean 'schedule'" in res.stderr)
    cfg.write_text(
        '[connections.z]\ncrm = "zoho"\nmapping = "m.yaml"\n[connections.z.secrets]\nclient_secrt = "X"\n')
    res = runner.invoke(app, ["sync", "run", "--config", str(cfg), "--connection", "y"])
    assert res.exit_code == 2 and "did you mean 'client_secret'" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text((Path(__file__).parents[2] / "mappings" / "zoho.yaml").read_text().replace(
        "Prepaid_Payments", "").replace("  module: \n", "  modul: Prepaid_Payments\n"))
    res = runner.invoke(app, ["mappings", "check", "--mapping", str(bad)])
    assert res.exit_code == 2 and "payments.modul" in res.stderr


def test_settings_roundtrip(tmp_path: Path) -> None:
    from connector.cli.sync_cmd import write_config

    write_config(tmp_path, "fxiaoke", extra={"open_user_id": "FSUID_1"})
    loaded = load_settings(tmp_path / "prepaid-sync.toml")
    name, conn = loaded.settings.connection(None)
    assert name == "fxiaoke" and conn.env_names()["app_secret"] == "FXIAOKE_APP_SECRET"
    assert loaded.mapping_path(conn).exists() and conn.schedule == "every 15 minutes"


def test_dry_run_says_how_many_it_did_not_list(tmp_path: Path, clean_env: None) -> None:
    """Issue 11.9: a dry run that cuts its list of customers says 'and N more' instead of stopping
    silently."""
    with ZohoSandbox(seed=70) as sb:
        res = runner.invoke(app,
                            ["init", "--crm", "zoho", "--sandbox", sb.api_domain, "--dir",
                             str(tmp_path)])
        assert res.exit_code == 0, res.stdout
        cfg = tmp_path / "prepaid-sync.toml"
        plan = runner.invoke(app, ["sync", "run", "--config", str(cfg), "--dry-run"])
        assert plan.exit_code == 0, plan.stdout
        doc = json.loads(
            runner.invoke(
                app, ["sync", "run", "--config", str(cfg), "--dry-run", "--json"]).stdout)
        hidden = len(doc["changes"]) - 50
        assert hidden > 0
        assert f"... and {hidden} more customers with changes (sync run --dry-run --json lists them all)" in \
            plan.stdout.replace("\n", " ").replace("  ", " ")
