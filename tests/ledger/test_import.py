"""CSV import on SQLite and PostgreSQL: all rows or none, every bad row named, re-import changes nothing."""

from __future__ import annotations

from decimal import Decimal

from connector.ledger import Ledger
from connector.ledger.importer import import_text
from connector.ledger.verify import verify

GOOD = """op,customer,amount,currency,key,expires_at,refundable,priority,source_system,source_id,memo
deposit,a,100.00,CNY,d1,2099-01-31,,,zoho,Payments:1,
deposit,a,20,CNY,d2,,false,10,,,promo
consume,a,25.50,CNY,u1,,,,,,
refund,a,10,CNY,r1,,,,,,
adjust,b,-1,USD,x1,,,,,,
deposit,b,5,USD,d3,,,,,,
"""


def test_import_applies_every_row_once(ledger: Ledger) -> None:
    bad_first = import_text(ledger.engine,
                            GOOD.replace("adjust,b,-1,USD,x1,,,,,,", "adjust,b,-1,USD,x1,,,,,,oops"))
    assert bad_first.applied is False  # the adjustment comes before any money: refused, so nothing lands
    assert [(e.line, e.column) for e in bad_first.errors] == [(6, "amount")]
    assert verify(ledger.engine).counts["entries"] == 0
    good = GOOD.replace("adjust,b,-1,USD,x1,,,,,,\n", "")
    first = import_text(ledger.engine, good)
    assert (first.applied, first.created, first.exists, first.errors) == (True, 5, 0, [])
    again = import_text(ledger.engine, good)
    assert (again.created, again.exists) == (0, 5)
    assert ledger.balance("a", "CNY")[0].balance == Decimal("84.50")
    assert ledger.balance("b", "USD")[0].balance == Decimal("5.00")
    # promo lot (priority 10) went first; the refund could only touch the paid lot
    assert ledger.history("a", "CNY")[0].entries[2]["amount"] == "-25.50"
    assert verify(ledger.engine).ok


def test_import_lists_every_bad_row_and_changes_nothing(ledger: Ledger) -> None:
    text = ("op,customer,amount,currency,key\n"
            "deposit,c,10,CNY,k1\n"
            "deposit,c,1.001,CNY,k2\n"
            "consume,c,50,CNY,k3\n"
            "deposit,c,5,XYZ,k4\n"
            "deposit,c,11,CNY,k1\n")
    report = import_text(ledger.engine, text)
    assert report.applied is False
    assert [(e.line, e.column) for e in report.errors] == [(3, "amount"), (4, "amount"), (5, "currency"),
                                                           (6, "key")]
    assert verify(ledger.engine).counts["postings"] == 0


def test_dry_run_checks_and_writes_nothing(ledger: Ledger) -> None:
    report = import_text(ledger.engine, GOOD.replace("adjust,b,-1,USD,x1,,,,,,\n", ""), dry_run=True)
    assert (report.dry_run, report.applied, report.created, report.errors) == (True, False, 5, [])
    assert verify(ledger.engine).counts["entries"] == 0


def test_import_refuses_currency_mixing_like_single_postings(ledger: Ledger) -> None:
    report = import_text(ledger.engine,
                         "op,customer,amount,currency,key\ndeposit,m,10,CNY,m1\nconsume,m,1,USD,m2\n")
    assert [(e.line, e.column) for e in report.errors] == [(3, "currency")]
    assert "currencies never mix" in report.errors[0].reason
