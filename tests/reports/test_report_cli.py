"""`prepaid-sync report` and `prepaid-sync statement` end to end, outputs parsed and validated."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_book import Book
from typer.testing import CliRunner

from connector.cli import app
from connector.cli.report_cmd import file_name, parse_as_of
from connector.reports.render import CUSTOMER_COLUMNS, SUMMARY_COLUMNS

runner = CliRunner()


def run(book: Book, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["--db", book.url, *args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result.stdout + (result.stderr if code else "")


def test_report_json(sqlite_book: Book, attrs_csv: str) -> None:
    doc = json.loads(
        run(sqlite_book, "report", "--as-of", "2026-06-30", "-f", "json", "--attributes", attrs_csv))
    assert doc["as_of"] == "2026-06-30T23:59:59.999999+00:00"
    assert doc["currencies"][0]["liability"] == "9700.00" and doc["by_flag"]["vip_watch"]["CNY"][
        "customers"] == 1
    assert {c["customer"]: c["risk_score"] for c in doc["customers"]} == \
        {"acme": 15, "bolt": 40, "cobalt": 0, "delta": 35, "echo": 0}


def test_report_csv_files(sqlite_book: Book, tmp_path: Path) -> None:
    out = tmp_path / "rep.csv"
    run(sqlite_book, "report", "--as-of", "2026-06-30", "-f", "csv", "-o", str(out))
    summary = list(csv.reader(io.StringIO(out.read_text())))
    assert tuple(summary[0]) == SUMMARY_COLUMNS and all(len(r) == 5 for r in summary)
    assert ["currency", "CNY", "", "liability", "9700.00"] in summary
    assert ["punctuality", "", "", "open_overdue", "1"] in summary
    customers = list(csv.DictReader(io.StringIO((tmp_path / "rep.customers.csv").read_text())))
    assert tuple(customers[0]) == CUSTOMER_COLUMNS and len(customers) == 5
    acme = next(r for r in customers if r["customer"] == "acme")
    assert (acme["balance"], acme["runway_days"], acme["breakage_90d"], acme["avg_days_late"]) == \
        ("4000.00", "60", "2666.67", "4.0")


def test_report_table_and_html(sqlite_book: Book, tmp_path: Path) -> None:
    text = run(sqlite_book, "report", "--as-of", "2026-06-30")
    assert "CN¥9,700.00" in text and "Running out within 30 days" in text
    html = tmp_path / "r.html"
    run(sqlite_book, "report", "--as-of", "2026-06-30", "-f", "html", "-o", str(html))
    page = html.read_text()
    assert 'id="liability-CNY">CN¥9,700.00<' in page and "<svg" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_refusals(sqlite_book: Book) -> None:
    assert "format" in run(sqlite_book, "report", "-f", "pdf", code=2)
    assert "not an ISO 8601" in run(sqlite_book, "report", "--as-of", "June", code=2)
    assert "CUSTOMER or --all" in run(sqlite_book, "statement", code=2)
    assert "--out-dir" in run(sqlite_book, "statement", "--all", code=2)
    assert "customer ghost has no ledger account" in run(sqlite_book, "statement", "ghost", code=2)
    assert "IANA" in run(sqlite_book, "statement", "acme", "--tz", "Mars/Base", code=2)


def test_statement_cli(sqlite_book: Book, tmp_path: Path) -> None:
    doc = json.loads(run(sqlite_book, "statement", "acme", "--from", "2026-04-01", "--to", "2026-06-30",
                         "-f", "json"))
    assert (doc["sections"][0]["opening"], doc["sections"][0]["closing"]) == ("10000.00", "4000.00")
    run(sqlite_book, "statement", "--all", "--out-dir", str(tmp_path / "st"), "--to", "2026-06-30", "--lang",
        "en")
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == \
        ["acme.html", "bolt.html", "cobalt.html", "delta.html", "echo.html"]


def test_custody_and_compliance_cli(sqlite_book: Book, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[compliance]\nissuer_class = "brand"\n')
    doc = json.loads(
        run(sqlite_book, "report", "custody", "--quarter", "2026Q2", "--config", str(cfg), "--json"))
    assert doc["lines"][0] == {"currency": "CNY", "accounts": 3, "outstanding": "9700.00", "ratio": "0.40",
                               "required": "3880.00"}
    doc = json.loads(
        run(sqlite_book, "report", "compliance", "--from", "2026-01-01", "--to", "2026-06-30", "--json"))
    assert [w["rule"] for w in doc["warnings"]] == ["real_name", "cash", "cash"]


def test_stop_switch_on_the_cli(sqlite_book: Book, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text('[compliance]\naccept_prepayments = false\nstop_reason = "经营风险 / operating risk"\n',
                   encoding="utf-8")
    monkeypatch.setenv("PREPAID_SYNC_CONFIG", str(cfg))
    text = run(sqlite_book, "ledger", "deposit", "acme", "10", "--currency", "CNY", "--key", "stop-1", code=3)
    assert "prepayments are stopped" in text and "operating risk" in text
    imp = tmp_path / "in.csv"
    imp.write_text("op,customer,amount,currency,key\ndeposit,acme,10,CNY,stop-2\n")
    assert "prepayments are stopped" in run(sqlite_book, "ledger", "import", str(imp),
                                            code=3) + ""  # a ledger rule: exit 3, as for one posting


def test_helpers() -> None:
    assert file_name("acme", "html") == "acme.html"
    name = file_name("zoho:Accounts:1/2", "csv")
    assert name.startswith("zoho_Accounts_1_2-") and name.endswith(".csv")
    assert file_name("zoho:Accounts:1/2", "csv") != file_name("zoho_Accounts:1/2", "csv")
    assert parse_as_of("2026-06-30T10:00:00+08:00").isoformat() == "2026-06-30T02:00:00+00:00"
