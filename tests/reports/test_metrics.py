"""The pure report rules on small hand-computed cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from connector.ledger.rules import LotState
from connector.reports.metrics import (Rate, daily_rate, expected_breakage, match_payments, risk_score,
                                       runway_days)

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def lot(i: int, remaining: int, days: int | None, priority: int = 50) -> LotState:
    return LotState(i, remaining, remaining, T0 - timedelta(days=10),
                    T0 + timedelta(days=days) if days is not None else None, True, priority)


def test_rate_uses_account_age_when_younger_than_window() -> None:
    assert daily_rate(1000, T0 - timedelta(days=10), T0, 90) == Rate(1000, 10)
    assert daily_rate(1000, T0 - timedelta(days=200), T0, 90) == Rate(1000, 90)
    assert daily_rate(1000, T0 - timedelta(hours=2), T0, 90) == Rate(1000, 1)
    assert daily_rate(-50, T0 - timedelta(days=200), T0, 90) == Rate(0, 90)


def test_runway_is_exact_and_floors() -> None:
    assert runway_days(400000, Rate(600000, 90)) == 60   # a Decimal rate would give 59
    assert runway_days(100, Rate(0, 90)) is None
    assert runway_days(-5, Rate(10, 1)) == 0
    assert runway_days(99, Rate(10, 1)) == 9


def test_breakage_follows_drawdown_order() -> None:
    rate = Rate(10, 1)  # 10 per day
    # A non-expiring lot drawn first absorbs 150 of use; the expiring lot gets 10*20 - 150 = 50 of its 100.
    assert expected_breakage([lot(1, 150, None, priority=10), lot(2, 100, 20)], rate, T0) == {2: 50}
    # Two expiring lots in expiry order: the first takes 10*10 = 100 of 300; the second 10*30 - 100 = 200
    # of 150.
    assert expected_breakage([lot(1, 300, 10), lot(2, 150, 30)], rate, T0) == {1: 200, 2: 0}
    assert expected_breakage([lot(1, 300, 10)], Rate(0, 90), T0) == {1: 300}


def test_payments_fifo() -> None:
    deposits = [(datetime(2026, 1, 3, tzinfo=UTC), 500), (datetime(2026, 1, 20, tzinfo=UTC), 700)]
    terms = [("c2", date(2026, 2, 1), 600), ("c1", date(2026, 1, 1), 500), ("c3", date(2026, 3, 1), 1000),
             ("c4", date(2026, 9, 1), None)]
    got = match_payments(terms, deposits, date(2026, 4, 1))
    assert [(p.contract_ref, p.arrived, p.days_late, p.status) for p in got] == [
        ("c1", date(2026, 1, 3), 2, "late"), ("c2", date(2026, 1, 20), -12, "on_time"),
        ("c3", None, 31, "open_overdue"), ("c4", None, None, "pending")]


def test_risk_score_explains_itself() -> None:
    r = risk_score(open_overdue=1, late_payments=4, runway=5, balance=40, balance_before=100, debt=1,
                   flags=("a", "b", "c", "d"), trend_days=30)
    assert r.score == 100 and r.band == "high"  # 35 + 15 + 25 + 10 + 10 + 15 = 110, capped
    assert r.reasons == ["1 payment(s) overdue and unpaid (+35)", "4 late payment(s) (+15)",
                         "runway 5 day(s) <= 7 (+25)", "balance fell 60% in 30 days (+10)",
                         "using its credit line (+10)", "CRM flag(s): a, b, c, d (+15)"]
    quiet = risk_score(open_overdue=0, late_payments=0, runway=None, balance=100, balance_before=100, debt=0,
                       flags=(), trend_days=30)
    assert (quiet.score, quiet.band, quiet.reasons) == (0, "low", [])
