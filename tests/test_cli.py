"""The CLI contract: commands, JSON shapes, refusals and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app

runner = CliRunner()
C = "zoho:Accounts:4876876000000123"


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/cli.db"

    def invoke(*args: str, code: int = 0) -> dict | list | str:  # type: ignore[type-arg]
        result = runner.invoke(app, ["--db", url, *args])
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        if "--json" in args:
            return json.loads(result.stdout)  # type: ignore[no-any-return]
        return result.stdout + result.stderr

    return invoke


def test_deposit_consume_refund_balance_json(cli) -> None:  # type: ignore[no-untyped-def]
    dep = cli("ledger", "deposit", C, "100.00", "--currency", "CNY", "--key", "k1", "--expires", "2099-12-31",
              "--json")
    assert dep["status"] == "created" and dep["balance"] == "100.00"
    assert cli("ledger", "deposit", C, "100.00", "--currency", "CNY", "--key", "k1", "--expires",
               "2099-12-31", "--json")["status"] == "exists"
    assert cli("ledger", "consume", C, "30", "--currency", "CNY", "--key", "k2",
               "--json")["balance"] == "70.00"
    assert cli("ledger", "refund", C, "20", "--currency", "CNY", "--key", "k3",
               "--json")["balance"] == "50.00"
    doc = cli("ledger", "balance", C, "--currency", "CNY", "--json")
    assert {"customer": C, "currency": "CNY", "balance": "50.00"}.items() <= doc.items()


@pytest.mark.parametrize(("args", "code", "words"), [
    (("ledger", "consume", C, "1000", "--currency", "CNY", "--key", "x"), 3, ["1000.00", C, "available"]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "k1"), 3, ["k1", "already used"]),
    (("ledger", "consume", C, "1", "--currency", "USD", "--key", "x"), 3, ["currencies never mix"]),
    (("ledger", "refund", C, "60", "--currency", "CNY", "--key", "x"), 3, ["60.00", "refundable"]),
    (("ledger", "deposit", C, "1.001", "--currency", "CNY", "--key", "x"), 2, ["decimal places"]),
    (("ledger", "deposit", "--currency", "CNY", "--key", "x", "--", C, "-5"), 2, ["positive"]),
    (("ledger", "deposit", C, "5", "--currency", "ABC", "--key", "x"), 2, ["unknown currency"]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "x", "--expires", "soon"), 2, ["ISO 8601"]),
])
def test_refusals_have_exit_codes_and_reasons(cli, args, code, words) -> None:  # type: ignore[no-untyped-def]
    cli("ledger", "deposit", C, "50", "--currency", "CNY", "--key", "k1")
    text = cli(*args, code=code)
    for word in words:
        assert word in text
    cut = args.index("--") if "--" in args else len(args)
    doc = cli(*args[:cut], "--json", *args[cut:], code=code)
    assert doc["error"] and doc["message"]
    assert cli("ledger", "balance", C, "--currency", "CNY", "--json")["balance"] == "50.00"


def test_expire_history_accounts_verify(cli) -> None:  # type: ignore[no-untyped-def]
    cli("ledger", "deposit", C, "10", "--currency", "CNY", "--key", "a", "--expires", "2020-01-31",
        "--effective", "2020-01-01")
    cli("ledger", "deposit", "other", "7", "--currency", "USD", "--key", "b")
    out = cli("ledger", "expire", "--as-of", "2021-01-01", "--json")
    assert [e["amount"] for e in out["expired"]] == ["10.00"]
    assert cli("ledger", "expire", "--json")["expired"] == []
    hist = cli("ledger", "history", C, "--json")
    assert [e["kind"] for e in hist["entries"]] == ["deposit", "expire"]
    assert hist["closing"] == "0.00"
    accounts = cli("ledger", "accounts", "--json")
    assert {(a["customer"], a["balance"]) for a in accounts} == {(C, "0.00"), ("other", "7.00")}
    assert cli("ledger", "verify", "--json")["ok"] is True
    assert "ledger consistent" in cli("ledger", "verify")
    as_of = cli("ledger", "balance", C, "--as-of", "2020-01-15T00:00:00Z", "--json")
    assert as_of["balance"] == "10.00"


def test_adjust_reverse_and_human_output(cli) -> None:  # type: ignore[no-untyped-def]
    dep = cli("ledger", "deposit", C, "10", "--currency", "CNY", "--key", "a", "--json")
    assert "posted" in cli("ledger", "adjust", C, "-2.50", "--currency", "CNY", "--key", "adj", "--memo",
                           "typo")
    cli("ledger", "adjust", C, "1", "--currency", "CNY", "--key", "adj2", code=2)  # memo is required
    rev = cli("ledger", "reverse", str(dep["entries"][0]["id"]), "--key", "rev", code=3)
    assert "left" in rev
    table = cli("ledger", "balance", C)
    assert "7.50" in table


def test_import_all_or_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.csv"
    good.write_text("op,customer,amount,currency,key\ndeposit,a,10,CNY,i1\nconsume,a,4,CNY,i2\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("op,customer,amount,currency,key\ndeposit,b,10,CNY,j1\nconsume,b,11,CNY,j2\n"
                   "deposit,b,1.999,CNY,j3\n")
    assert cli("ledger", "import", str(good), "--json")["created"] == 2
    assert cli("ledger", "import", str(good), "--json")["exists"] == 2
    report = cli("ledger", "import", str(bad), "--json", code=2)
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(3, "amount"), (4, "amount")]
    text = cli("ledger", "import", str(bad), code=2)
    assert "line 4, column amount" in text and "nothing was changed" in text
    assert cli("ledger", "accounts", "--json") == [
        {"customer": "a", "currency": "CNY", "balance": "6.00", "debt": "0.00", "credit_limit": "0.00"}]


def test_db_upgrade_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("PREPAID_SYNC_DB", url)
    result = runner.invoke(app, ["db", "upgrade"])
    from connector.db.engine import head_revision

    assert result.exit_code == 0 and f"revision {head_revision()}" in result.stdout
    assert runner.invoke(app, ["ledger", "deposit", "e", "1", "-c", "EUR", "-k", "e1"]).exit_code == 0
    assert (tmp_path / "env.db").exists()


def test_ledger_demo_runs_offline(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ledger", "demo", "--path", str(tmp_path / "demo.db")])
    assert result.exit_code == 0, result.stdout
    assert "consistent" in result.stdout and "refused" in result.stdout
