"""Compliance: rules file, stop switch on the ledger and the importer, custody, threshold warnings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from report_book import ATTRS, NOW, Book, d

from connector.compliance import ComplianceRules, DepositGuard, PrepaymentsStopped, load_rules
from connector.compliance.custody import custody_report, previous_quarter, quarter_bounds
from connector.compliance.thresholds import threshold_warnings
from connector.errors import ConfigError, InvalidInput
from connector.ledger import Ledger
from connector.ledger.importer import Importer


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prepaid-sync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_rules_file_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREPAID_SYNC_CONFIG", raising=False)
    assert load_rules().source == "built-in defaults"
    path = write(tmp_path, '[other]\nx = 1\n[compliance]\nissuer_class = "group"\n'
                           'real_name_threshold = {CNY = "8000"}\n')
    rules = load_rules()
    assert rules.ratio == Decimal("0.30") and rules.real_name_threshold == {"CNY": Decimal("8000.00")}
    assert rules.source == "prepaid-sync.toml"
    write(tmp_path, '[compliance]\ncustody_ratio = 0.2\ncash_threshold_unit = {ABC = "1"}\nnope = true\n')
    with pytest.raises(ConfigError) as exc:
        load_rules(path)
    msg = str(exc.value)
    assert "[compliance].custody_ratio" in msg and "floats" in msg
    assert "unknown currency 'ABC'" in msg and "[compliance].nope" in msg
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "missing.toml")


def test_stop_switch_refuses_deposits_not_replays(book: Book) -> None:
    stopped = ComplianceRules(accept_prepayments=False, stop_reason="major operating risk",
                              source="test.toml")
    ledger = Ledger(book.engine, clock=lambda: NOW, deposit_guard=DepositGuard(stopped))
    assert ledger.deposit("acme", "10000", "CNY", "a1", effective_at=d(2026, 3, 5), expires_at=d(2026, 7, 21),
                          source=("zoho", "PAY-1")).status == "exists"
    with pytest.raises(PrepaymentsStopped) as exc:
        ledger.deposit("acme", "50", "CNY", "new-1")
    assert str(exc.value) == ("deposit of 50.00 CNY for customer acme refused: prepayments are stopped "
                              "(accept_prepayments = false in test.toml): major operating risk")
    assert exc.value.exit_code == 3
    assert ledger.consume("acme", "10", "CNY", "c-after").created  # only deposits stop
    open_ledger = Ledger(book.engine, clock=lambda: NOW, deposit_guard=DepositGuard(ComplianceRules()))
    assert open_ledger.deposit("acme", "50", "CNY", "new-1").created


def test_stop_switch_in_the_importer(book: Book, tmp_path: Path) -> None:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("op,customer,amount,currency,key\ndeposit,zed,5,CNY,z1\nconsume,delta,1,CNY,z2\n")
    guard = DepositGuard(ComplianceRules(accept_prepayments=False))
    report = Importer(book.engine, deposit_guard=guard).run(csv_path)
    assert not report.applied and [(e.line, e.column) for e in report.errors] == [(2, "accept_prepayments")]
    assert "prepayments are stopped" in report.errors[0].reason


def test_custody(book: Book) -> None:
    assert quarter_bounds("2026Q2") == (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    assert previous_quarter(datetime(2026, 2, 1, tzinfo=UTC)) == "2025Q4"
    with pytest.raises(InvalidInput):
        quarter_bounds("2026-5")
    with pytest.raises(ConfigError, match="issuer_class"):
        custody_report(book.engine, "2026Q2", ComplianceRules())
    lines = {x.currency: x.to_dict() for x in custody_report(book.engine, "2026Q2",
                                                             ComplianceRules(custody_ratio=Decimal("0.3333")))}
    # CNY positive balances at 2026-06-30: acme 4000 + bolt 4800 + echo 900 (delta is negative) = 9700.
    assert lines["CNY"] == {"currency": "CNY", "accounts": 3, "outstanding": "9700.00", "ratio": "0.3333",
                            "required": "3233.01"}  # 3233.01 = 9700 * 0.3333 = 3233.01 exactly
    assert lines["USD"]["required"] == "299.97"  # 900 * 0.3333 = 299.97
    q1 = {x.currency: x.outstanding for x in custody_report(book.engine, "2026Q1",
                                                            ComplianceRules(issuer_class="scale"))}
    assert q1 == {"CNY": 1000000, "USD": 90000}


def test_custody_rounds_up(book: Book) -> None:
    line = custody_report(book.engine, "2026Q2", ComplianceRules(custody_ratio=Decimal("0.33333")))[0]
    assert line.required == 323331  # 970000 * 0.33333 = 323330.1 -> up to 323331 fen


def test_threshold_warnings(book: Book) -> None:
    rules = ComplianceRules()
    got = threshold_warnings(book.engine, d(2026, 1, 1), d(2026, 7, 1), rules, ATTRS)
    assert [(w.customer, w.rule) for w in got] == [("acme", "real_name"), ("acme", "cash")]
    assert "zoho:PAY-1" in got[0].message and "bank transfer" in got[1].message
    assert "unknown kind (unit threshold applied)" in got[1].message  # acme's kind is not known
    # bolt is an individual: its 5000 CNY is under the individual cash threshold of 50000.
    no_attrs = threshold_warnings(book.engine, d(2026, 1, 1), d(2026, 7, 1), rules)
    assert [(w.customer, w.rule) for w in no_attrs] == [("acme", "real_name"), ("acme", "cash"),
                                                        ("bolt", "cash")]
    assert not threshold_warnings(book.engine, d(2026, 3, 6), d(2026, 5, 1), rules)
