"""Warnings for single prepayments at or above the real-name or cash thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from connector.compliance.rules import ComplianceRules
from connector.money import fmt, from_minor
from connector.reports.attributes import CustomerAttributes, NoAttributes
from connector.reports.queries import aware, deposits_between, reference


@dataclass(frozen=True, slots=True)
class ThresholdWarning:
    """One deposit that triggers a rule."""

    customer: str
    currency: str
    entry_id: int
    at: datetime
    amount: int
    rule: str  # real_name | cash
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "customer": self.customer, "currency": self.currency, "entry": self.entry_id,
            "effective_at": self.at.isoformat(), "amount": fmt(self.amount, self.currency), "rule": self.rule,
            "message": self.message
        }


def threshold_warnings(engine: Engine, start: datetime, end: datetime, rules: ComplianceRules,
                       attributes: CustomerAttributes | None = None) -> list[ThresholdWarning]:
    """Deposits with start <= effective time < end at or above a threshold of their currency.

    The cash threshold depends on who pays: `individual` customers use `cash_threshold_individual`;
    units and customers of unknown kind use the lower `cash_threshold_unit` (the safe side).
    """
    with engine.connect() as conn:
        deposits = list(deposits_between(conn, start, end))
    kinds = (attributes or NoAttributes()).lookup({d.customer_key for d in deposits})
    out: list[ThresholdWarning] = []
    for d in deposits:
        cur, amount = d.currency, int(d.amount)
        value = from_minor(amount, cur)
        where = f"deposit {reference(d)} of {fmt(amount, cur)} {cur} for customer {d.customer_key}"
        limit = rules.real_name_threshold.get(cur)
        if limit is not None and value >= limit:
            out.append(
                ThresholdWarning(
                    d.customer_key, cur, d.id, aware(d.effective_at), amount, "real_name",
                    f"{where} is at or above {limit} {cur}: record the purchaser's real name "
                    "and ID and keep them at least 5 years"))
        info = kinds.get(d.customer_key)
        individual = info is not None and info.kind == "individual"
        cash = (rules.cash_threshold_individual if individual else rules.cash_threshold_unit).get(cur)
        if cash is not None and value >= cash:
            who = "an individual" if individual else "a unit" if info is not None and info.kind else \
                "a customer of unknown kind (unit threshold applied)"
            out.append(
                ThresholdWarning(
                    d.customer_key, cur, d.id, aware(d.effective_at), amount, "cash",
                    f"{where} is at or above {cash} {cur} for {who}: it must be paid by bank "
                    "transfer, not cash"))
    return out
