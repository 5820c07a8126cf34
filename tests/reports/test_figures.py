"""Report figures against hand computations over the book in conftest.py (as of 2026-06-30, window 90 days).

acme   CNY: 10000 paid 2026-03-05 (due 03-01: 4 days late), lot expires 2026-07-21 00:00; used 3000+1500+1500
            in the window -> balance 4000, rate 6000/90 per day, runway 4000*90//6000 = 60 days;
            20 days to expiry -> expected use 6000*20//90 = 1333.33 -> breakage 4000 - 1333.33 = 2666.67;
            balance 30 days earlier 5500 -> fell 27% (+5); late payment (+5); runway <= 90 (+5): risk 15.
bolt   CNY: 'none' policy; 5000 paid + 1000 bonus (drawn first, expiring earlier); used 1200 -> 4800 left;
            agreed 20000 by 06-01, only 5000 arrived -> overdue 29 days (+35), flag (+5): risk 40;
            contract refund 0; rules: 'none' void, value 4800 at the paid price 4800*5000/6000 = 4000.
cobalt USD: one-year card 1200 (2026-01-01 .. 2027-01-01), 300 used in February: pro rata
            120000 * 15897600 // 31536000 = 60493 -> 604.93 both ways; no recent use.
delta  CNY: credit line; 300 used, 100 used and reversed -> balance -300, debt 300, runway 0: risk 25+10.
echo   CNY: 800 expired 06-21 (not swept) + 100 paid marked non-refundable: contract 0, rules 900.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from report_book import AS_OF, ATTRS, Book

from connector.compliance.rules import ComplianceRules
from connector.money import fmt
from connector.reports import build_report
from connector.reports.render import to_json


def _rows(book: Book, **kw: object) -> dict[str, dict]:  # type: ignore[type-arg]
    report = build_report(book.engine, kw.pop("as_of", AS_OF), attributes=ATTRS, **kw)  # type: ignore[arg-type]
    return {r["customer"]: r for r in report.to_dict()["customers"]}


def test_currency_totals(book: Book) -> None:
    doc = build_report(book.engine, AS_OF, attributes=ATTRS).to_dict()
    cny, usd = doc["currencies"]
    assert cny == {"currency": "CNY", "accounts": 4, "liability": "9700.00", "receivable": "300.00",
                   "refund_contract": "4000.00", "refund_rules": "8900.00",
                   "expiring": {"30d": "4000.00", "60d": "4000.00", "90d": "4000.00"},
                   "expected_breakage": {"30d": "2666.67", "60d": "2666.67", "90d": "2666.67"},
                   "expired_unswept": "800.00", "consumed_in_window": "7500.00"}
    assert usd["liability"] == "900.00" and usd["refund_contract"] == usd["refund_rules"] == "604.93"


def test_per_customer_figures(book: Book) -> None:
    rows = _rows(book)
    acme, bolt, cobalt, delta, echo = (rows[k] for k in ("acme", "bolt", "cobalt", "delta", "echo"))
    assert (acme["balance"], acme["runway_days"], acme["daily_rate"]) == ("4000.00", 60, "66.67")
    assert acme["expected_breakage"]["30d"] == "2666.67"
    assert acme["payments"] == [{"contract_ref": "", "due_date": "2026-03-01", "agreed": "10000.00",
                                 "arrived": "2026-03-05", "days_late": 4, "status": "late"}]
    assert acme["risk_score"] == 15 and len(acme["risk_reasons"]) == 3
    assert (bolt["balance"], bolt["runway_days"], bolt["refund_contract"], bolt["refund_rules"]) == \
        ("4800.00", 148, "0.00", "4000.00")
    assert bolt["payments"][0]["status"] == "open_overdue" and bolt["payments"][0]["days_late"] == 29
    assert (bolt["risk_score"], bolt["risk_band"]) == (40, "medium")
    assert cobalt["runway_days"] is None and cobalt["refund_contract"] == "604.93"
    assert (delta["balance"], delta["debt"], delta["runway_days"], delta["risk_score"]) == ("-300.00",
                                                                                            "300.00", 0, 35)
    assert (echo["expired_unswept"], echo["refund_contract"], echo["refund_rules"]) == ("800.00", "0.00",
                                                                                        "900.00")


def test_groups_runway_punctuality_monthly_top(book: Book) -> None:
    doc = build_report(book.engine, AS_OF, attributes=ATTRS, top_n=2).to_dict()
    assert doc["by_tier"]["CNY"] == {"(none)": {"customers": 1, "liability": "900.00"},
                                     "gold": {"customers": 2, "liability": "4000.00"},
                                     "silver": {"customers": 1, "liability": "4800.00"}}
    assert doc["by_owner"]["CNY"]["li"] == {"customers": 2, "liability": "4000.00"}
    assert doc["by_flag"] == {"vip_watch": {"CNY": {"customers": 1, "liability": "4800.00"}}}
    assert doc["runway_distribution"] == {"0-7": 1, "8-30": 0, "31-90": 1, "91-180": 1, ">180": 0,
                                          "no recent use": 2}
    assert [r["customer"] for r in doc["running_out"]] == ["delta"]
    assert doc["punctuality"] == {"payments": 2, "on_time": 0, "late": 1, "open_overdue": 1, "pending": 0,
                                  "avg_days_late": "4.0", "avg_days_late_of_late": "4.0", "max_days_late": 4}
    cny = {m["month"]: m["consumed"] for m in doc["monthly_consumption"]["CNY"]}
    assert len(cny) == 12 and (cny["2026-04"], cny["2026-05"], cny["2026-06"], cny["2025-07"]) == \
        ("3000.00", "1500.00", "3000.00", "0.00")  # June: 1500 + 1200 + (300 + 100 - 100 reversed)
    assert [r["customer"] for r in doc["top_customers"]["CNY"]] == ["bolt", "acme"]


def test_as_of_in_the_past_reads_lots_from_allocations(book: Book) -> None:
    rows = _rows(book, as_of=datetime(2026, 5, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert set(rows) == {"acme", "bolt", "cobalt"}  # delta and echo had no entries yet
    assert rows["acme"]["balance"] == "5500.00"
    assert rows["acme"]["expiring"] == {"30d": "0.00", "60d": "5500.00", "90d": "5500.00"}
    assert rows["bolt"]["expiring"]["90d"] == "1000.00"   # the bonus lot, unused then
    assert rows["bolt"]["refund_rules"] == "5000.00"     # 6000 of value at 5000/6000


def test_rules_change_refunds(book: Book) -> None:
    strict = ComplianceRules(forbid_forfeiture=False, discount_at_paid_price=False)
    rows = _rows(book, rules=strict)
    assert rows["bolt"]["refund_rules"] == "0.00" and rows["echo"]["refund_rules"] == "0.00"
    swept = book.ledger.expire(datetime(2026, 6, 30, tzinfo=UTC))
    assert len(swept) == 1
    rows = _rows(book)
    assert rows["echo"]["expired_unswept"] == "0.00" and rows["echo"]["refund_rules"] == "900.00"
    assert rows["echo"]["balance"] == "100.00"


def test_money_is_decimal_strings(book: Book) -> None:
    report = build_report(book.engine, AS_OF)
    for row in report.accounts:
        assert isinstance(row.rate.per_day, Decimal)
        assert fmt(row.balance, row.currency) == row.to_dict()["balance"]


def test_streamed_json_is_the_report(book: Book) -> None:
    report = build_report(book.engine, AS_OF, attributes=ATTRS)
    assert json.loads(to_json(report)) == json.loads(json.dumps(report.to_dict()))
