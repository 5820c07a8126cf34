"""Custody report: outstanding prepaid balance at a quarter's end times the configured ratio."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import Engine

from connector.compliance.rules import ComplianceRules
from connector.errors import ConfigError, InvalidInput
from connector.money import fmt
from connector.reports.queries import positive_balances

_QUARTER = re.compile(r"(\d{4})-?[Qq]([1-4])")


@dataclass(frozen=True, slots=True)
class CustodyLine:
    """One currency: outstanding balance at quarter end and the custody it requires."""

    currency: str
    accounts: int
    outstanding: int
    ratio: Decimal
    required: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        c = self.currency
        return {"currency": c, "accounts": self.accounts, "outstanding": fmt(self.outstanding, c),
                "ratio": str(self.ratio), "required": fmt(self.required, c)}


def quarter_bounds(label: str) -> tuple[datetime, datetime]:
    """`2026Q1` -> [2026-01-01, 2026-04-01) in UTC."""
    m = _QUARTER.fullmatch(label.strip())
    if m is None:
        raise InvalidInput(f"quarter: {label!r} is not a quarter like 2026Q1", field="quarter")
    year, q = int(m.group(1)), int(m.group(2))
    start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    return start, end


def previous_quarter(at: datetime) -> str:
    """The last quarter that ended before `at`."""
    q = (at.month - 1) // 3 + 1
    return f"{at.year - 1}Q4" if q == 1 else f"{at.year}Q{q - 1}"


def custody_report(engine: Engine, quarter: str, rules: ComplianceRules) -> list[CustodyLine]:
    """Custody required per currency for the quarter after `quarter` (rounded up to the minor unit)."""
    ratio = rules.ratio
    if ratio is None:
        raise ConfigError(
            f"custody ratio not configured in {rules.source}: set [compliance].issuer_class "
            "(scale, group or brand: 20/30/40%) or [compliance].custody_ratio", field="custody_ratio")
    _, end = quarter_bounds(quarter)
    with engine.connect() as conn:
        totals = positive_balances(conn, end - timedelta(microseconds=1))
    return [CustodyLine(cur, n, total, ratio, int((Decimal(total) * ratio).to_integral_value(ROUND_CEILING)))
            for cur, (total, n) in sorted(totals.items())]
