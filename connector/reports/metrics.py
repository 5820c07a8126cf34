"""Pure report arithmetic: consumption rate, runway, expected breakage, payment punctuality, risk score.

Money is integer minor units; rates are `Decimal` minor units per day. Nothing here reads the
database, so each rule is tested on hand-computed numbers (docs/reports.md states the formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from connector.ledger.rules import LotState
from connector.ledger.standing import Payment, match_payments  # one punctuality rule (standing)

DAY = 86400
BUCKETS = (30, 60, 90)


def _seconds(start: datetime, end: datetime) -> int:
    delta = end - start
    return delta.days * DAY + delta.seconds


@dataclass(frozen=True, slots=True)
class Rate:
    """Consumption `amount` (minor units) over `days`; kept as a fraction so runway and breakage are exact."""

    amount: int
    days: int

    @property
    def per_day(self) -> Decimal:
        """Minor units per day (for display)."""
        return Decimal(self.amount) / Decimal(self.days)


def daily_rate(consumed: int, first_at: datetime, as_of: datetime, window_days: int) -> Rate:
    """Consumption per day over the window, or over the account's age when it is younger (at least 1 day)."""
    age_days = max(1, -(-_seconds(first_at, as_of) // DAY))
    return Rate(max(consumed, 0), min(window_days, age_days))


def runway_days(spendable: int, rate: Rate) -> int | None:
    """Whole days until the spendable balance runs out at `rate`; None without recent consumption."""
    if rate.amount <= 0:
        return None
    if spendable <= 0:
        return 0
    return spendable * rate.days // rate.amount


def expected_breakage(lots: list[LotState], rate: Rate, as_of: datetime) -> dict[int, int]:
    """Per expiring lot: the part not expected to be used before it expires.

    Consumption at a constant `rate` flows through `lots` (spendable, in drawdown order); a lot
    can only take what is consumed before its expiry, minus what the lots before it took.
    """
    used = 0
    out: dict[int, int] = {}
    for lot in lots:
        if lot.expires_at is None:
            take = lot.remaining
        else:
            capacity = rate.amount * _seconds(as_of, lot.expires_at) // (rate.days * DAY)
            take = min(lot.remaining, max(0, capacity - used))
            out[lot.id] = lot.remaining - take
        used += take
    return out


# The risk score: points per finding, summed and capped at 100. Each finding becomes a reason.
RISK_POINTS = {
    "open_overdue": 35,     # a due date has passed and the money has not arrived
    "late_payment": 5,      # per payment that arrived after its due date, at most 15
    "late_payment_max": 15,
    "runway_7": 25,         # spendable balance lasts 7 days or less at the recent rate (0 when used up)
    "runway_30": 15,        # 8 to 30 days
    "runway_90": 5,         # 31 to 90 days
    "balance_drop_50": 10,  # balance fell by half or more over the trend period
    "balance_drop_25": 5,   # balance fell by a quarter or more
    "credit_line": 10,      # the customer is using its credit line (debt > 0)
    "flag": 5,              # per CRM flag, at most 15
    "flag_max": 15,
}
RISK_BANDS = ((50, "high"), (25, "medium"), (0, "low"))


@dataclass(slots=True)
class Risk:
    """A score from 0 to 100 and the findings that add up to it."""

    score: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def band(self) -> str:
        """high (>= 50), medium (>= 25) or low."""
        return next(name for floor, name in RISK_BANDS if self.score >= floor)

    def add(self, points: int, why: str) -> None:
        """Add a finding."""
        if points:
            self.score += points
            self.reasons.append(f"{why} (+{points})")


def risk_score(*, open_overdue: int, late_payments: int, runway: int | None, balance: int,
               balance_before: int, debt: int, flags: tuple[str, ...], trend_days: int) -> Risk:
    """The documented risk score of one account (see RISK_POINTS)."""
    p = RISK_POINTS
    risk = Risk()
    if open_overdue:
        risk.add(p["open_overdue"], f"{open_overdue} payment(s) overdue and unpaid")
    if late_payments:
        risk.add(min(p["late_payment_max"], p["late_payment"] * late_payments),
                 f"{late_payments} late payment(s)")
    if runway is not None:
        for limit, name in ((7, "runway_7"), (30, "runway_30"), (90, "runway_90")):
            if runway <= limit:
                risk.add(p[name], f"runway {runway} day(s) <= {limit}")
                break
    if balance_before > 0 and balance < balance_before:
        drop = Decimal(balance_before - balance) / Decimal(balance_before)
        if drop >= Decimal("0.5"):
            risk.add(p["balance_drop_50"], f"balance fell {_pct(drop)} in {trend_days} days")
        elif drop >= Decimal("0.25"):
            risk.add(p["balance_drop_25"], f"balance fell {_pct(drop)} in {trend_days} days")
    if debt > 0:
        risk.add(p["credit_line"], "using its credit line")
    if flags:
        risk.add(min(p["flag_max"], p["flag"] * len(flags)), "CRM flag(s): " + ", ".join(flags))
    risk.score = min(100, risk.score)
    return risk


def _pct(ratio: Decimal) -> str:
    return f"{(ratio * 100).quantize(Decimal(1))}%"


__all__ = ["BUCKETS", "Payment", "Rate", "daily_rate", "expected_breakage", "match_payments", "risk_score",
           "runway_days"]
