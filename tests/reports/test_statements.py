"""Customer statements: balances, entries, lots, refund policy, labels, --all."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_book import ATTRS, NOW, Book, d

from connector.errors import NotFound
from connector.reports.display import money
from connector.timeutil import zone
from connector.statements import StatementLoader, to_csv, to_html, to_json


def test_statement_figures(book: Book) -> None:
    st = StatementLoader(book.engine, d(2026, 4, 1), d(2026, 7, 1), attributes=ATTRS).one("acme")
    (sec,) = st.sections
    assert (st.name, sec.currency, sec.opening, sec.closing) == ("Acme 有限公司", "CNY", 1000000, 400000)
    assert [(x.kind, x.amount, x.running) for x in sec.lines] == [
        ("consume", -300000, 700000), ("consume", -150000, 550000), ("consume", -150000, 400000)]
    assert sec.totals() == {"consume": -600000}
    assert [(x.amount, x.remaining, x.expires) for x in sec.lots] == [(1000000, 400000, d(2026, 7, 21))]
    assert (sec.policy, sec.refundable) == ("full", 400000)
    whole = StatementLoader(book.engine, None, d(2026, 7, 1)).one("acme").sections[0]
    assert whole.opening == 0 and whole.lines[0].reference == "zoho:PAY-1" and whole.lines[
        0].memo == "合同 C-1 预付款"


def test_statement_reversal_policy_and_currency(book: Book) -> None:
    loader = StatementLoader(book.engine, None, d(2026, 7, 1))
    delta = loader.one("delta").sections[0]
    assert [x.kind for x in delta.lines] == ["consume", "consume", "reverse"] and delta.closing == -30000
    bolt = loader.one("bolt").sections[0]
    assert (bolt.policy, bolt.refundable) == ("none", 400000)  # 'no refund' void: 4800 at 5000/6000
    with pytest.raises(NotFound, match="customer acme in USD has no ledger account"):
        StatementLoader(book.engine, None, d(2026, 7, 1), currency="USD").one("acme")
    with pytest.raises(NotFound, match="customer nobody has no ledger account"):
        loader.one("nobody")


def test_renderings(book: Book) -> None:
    st = StatementLoader(book.engine, d(2026, 4, 1), d(2026, 7, 1), attributes=ATTRS).one("acme")
    tz = zone("Asia/Shanghai")
    html_zh = to_html(st, "zh", tz, NOW)
    assert "预付款账户对账单" in html_zh and "期初余额" in html_zh and "消费" in html_zh
    assert "CN¥10,000.00" in html_zh and "CN¥4,000.00" in html_zh and "@page { size: A4" in html_zh
    assert "http" not in html_zh.replace('lang="zh-CN"', "")
    html_en = to_html(st, "en", tz, NOW)
    assert "Prepaid account statement" in html_en and "Full refund of the unused paid balance" in html_en
    rows = list(csv.reader(io.StringIO(to_csv(st, "en", zone("UTC")))))
    assert rows[0] == [
        "Customer key", "Currency", "Date", "Type", "Reference", "Description", "Amount", "Balance"
    ]
    assert rows[1][3:] == ["Opening balance", "", "", "", "10000.00"]
    assert rows[-1][2:] == ["2026-06-30", "Closing balance", "", "", "", "4000.00"]
    doc = json.loads(to_json(st))
    assert doc["sections"][0]["closing"] == "4000.00" and doc["sections"][0]["lots"][0][
        "remaining"] == "4000.00"


def test_all_with_balance(book: Book) -> None:
    book.ledger.deposit("zero", "5", "CNY", "z1", effective_at=d(2026, 6, 1))
    book.ledger.consume("zero", "5", "CNY", "z2", effective_at=d(2026, 6, 2))
    loader = StatementLoader(book.engine, None, d(2026, 7, 1), chunk=2)
    assert [s.customer for s in loader.with_balance()] == ["acme", "bolt", "cobalt", "delta", "echo"]


def test_money_display() -> None:
    assert money(123456, "CNY") == "CN¥1,234.56" and money(-1200, "USD") == "-$12.00"
    assert money(1234567, "JPY") == "JP¥1,234,567" and money(1000, "CHF") == "CHF 10.00"
    assert money(1234567, "KWD") == "KWD 1,234.567"
