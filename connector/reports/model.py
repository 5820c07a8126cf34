"""The report's data: one row per account plus per-currency summaries, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.ledger.standing import CODES
from connector.money import fmt
from connector.reports.metrics import BUCKETS, Payment, Rate

NONE = "(none)"
RUNWAY_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("0-7", 7), ("8-30", 30), ("31-90", 90), ("91-180", 180), (">180", None))
NO_USE = "no recent use"


@dataclass(slots=True)
class AccountRow:
    """One customer account (customer, currency) with every per-customer figure."""

    customer: str
    currency: str
    name: str | None = None
    owner: str | None = None
    tier: str | None = None
    flags: tuple[str, ...] = ()
    balance: int = 0
    balance_before: int = 0
    debt: int = 0
    spendable: int = 0
    consumed: int = 0
    rate: Rate = field(default_factory=lambda: Rate(0, 1))
    runway: int | None = None
    expiring: dict[int, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    breakage: dict[int, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    expired_unswept: int = 0
    payments: list[Payment] = field(default_factory=list)
    refund_contract: int = 0
    refund_rules: int = 0
    refund_policy: str = "full"
    refund_notes: list[str] = field(default_factory=list)
    risk: int = 0
    risk_band: str = "low"
    risk_reasons: list[str] = field(default_factory=list)
    standing: tuple[str, ...] = ()  # overdue / expiring_soon / expired / orphaned (connector.ledger.standing)
    contract_ends: date | None = None

    @property
    def late(self) -> list[Payment]:
        """Payments that arrived after their due date."""
        return [p for p in self.payments if p.status == "late"]

    @property
    def overdue(self) -> list[Payment]:
        """Due dates passed with the money still missing."""
        return [p for p in self.payments if p.status == "open_overdue"]

    def avg_days_late(self) -> Decimal | None:
        """Mean of (arrival - due date) over arrived payments, one decimal."""
        return mean_days(
            [p.days_late for p in self.payments if p.arrived is not None and p.days_late is not None])

    def runway_bucket(self) -> str:
        """The runway distribution bucket of this account."""
        if self.runway is None:
            return NO_USE
        return next(label for label, limit in RUNWAY_BUCKETS if limit is None or self.runway <= limit)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (money as decimal strings in the account currency)."""
        c = self.currency
        avg = self.avg_days_late()
        return {
            "customer": self.customer,
            "currency": c,
            "name": self.name,
            "owner": self.owner,
            "tier": self.tier,
            "flags": list(self.flags),
            "balance": fmt(self.balance, c),
            "debt": fmt(self.debt, c),
            "spendable": fmt(self.spendable, c),
            "balance_trend_start": fmt(self.balance_before, c),
            "consumed_in_window": fmt(self.consumed, c),
            "daily_rate": fmt_rate(self.rate.per_day, c),
            "runway_days": self.runway,
            "expiring": {f"{d}d": fmt(v, c)
                         for d, v in self.expiring.items()},
            "expected_breakage": {f"{d}d": fmt(v, c)
                                  for d, v in self.breakage.items()},
            "expired_unswept": fmt(self.expired_unswept, c),
            "payments": [{
                "contract_ref": p.contract_ref, "due_date": p.due_date.isoformat(),
                "agreed": fmt(p.agreed, c) if p.agreed is not None else None,
                "arrived": p.arrived.isoformat() if p.arrived else None, "days_late": p.days_late,
                "status": p.status
            } for p in self.payments],
            "avg_days_late": str(avg) if avg is not None else None,
            "refund_policy": self.refund_policy,
            "refund_contract": fmt(self.refund_contract, c),
            "refund_rules": fmt(self.refund_rules, c),
            "refund_notes": self.refund_notes,
            "risk_score": self.risk,
            "risk_band": self.risk_band,
            "risk_reasons": self.risk_reasons,
            "standing": list(self.standing),
            "contract_ends": self.contract_ends.isoformat() if self.contract_ends else None,
        }


def mean_days(days: list[int]) -> Decimal | None:
    """Mean of whole days, one decimal (Decimal, never float); None for an empty list."""
    return mean_of(sum(days), len(days))


def mean_of(total: int, count: int) -> Decimal | None:
    """`total` days over `count`, one decimal (Decimal, never float); None when `count` is 0."""
    return (Decimal(total) / count).quantize(Decimal("0.1")) if count else None


def fmt_rate(rate: Decimal, currency: str) -> str:
    """A daily rate (minor units per day) as a money string, rounded to the minor unit."""
    return fmt(int(rate.quantize(Decimal(1))), currency)


@dataclass(slots=True)
class CurrencySummary:
    """Totals for one currency (money in minor units)."""

    currency: str
    accounts: int = 0
    liability: int = 0          # sum of positive balances: prepaid money held
    receivable: int = 0         # credit-line use owed by customers
    refund_contract: int = 0
    refund_rules: int = 0
    expiring: dict[int, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    breakage: dict[int, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    expired_unswept: int = 0
    consumed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        c = self.currency
        return {"currency": c, "accounts": self.accounts, "liability": fmt(self.liability, c),
                "receivable": fmt(self.receivable, c), "refund_contract": fmt(self.refund_contract, c),
                "refund_rules": fmt(self.refund_rules, c),
                "expiring": {f"{d}d": fmt(v, c) for d, v in self.expiring.items()},
                "expected_breakage": {f"{d}d": fmt(v, c) for d, v in self.breakage.items()},
                "expired_unswept": fmt(self.expired_unswept, c), "consumed_in_window": fmt(self.consumed, c)}


@dataclass(slots=True)
class Punctuality:
    """Payment punctuality over all customers."""

    payments: int = 0
    on_time: int = 0
    late: int = 0
    open_overdue: int = 0
    pending: int = 0
    avg_days_late: Decimal | None = None   # mean of (arrival - due) over arrived payments
    avg_days_late_of_late: Decimal | None = None
    max_days_late: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        def _s(v: Decimal | None) -> str | None:
            return str(v) if v is not None else None
        return {
            "payments": self.payments, "on_time": self.on_time, "late": self.late,
            "open_overdue": self.open_overdue, "pending": self.pending,
            "avg_days_late": _s(self.avg_days_late), "avg_days_late_of_late": _s(self.avg_days_late_of_late),
            "max_days_late": self.max_days_late
        }


@dataclass(slots=True)
class Group:
    """Accounts and liability of one group (tier, owner or flag) in one currency."""

    customers: int = 0
    liability: int = 0


@dataclass
class Report:
    """Everything `prepaid-sync report` shows."""

    as_of: datetime
    window_days: int
    trend_days: int
    within_days: int
    rules_source: str
    accounts: list[AccountRow] = field(default_factory=list)
    currencies: dict[str, CurrencySummary] = field(default_factory=dict)
    monthly: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    by_tier: dict[str, dict[str, Group]] = field(default_factory=dict)
    by_owner: dict[str, dict[str, Group]] = field(default_factory=dict)
    by_flag: dict[str, dict[str, Group]] = field(default_factory=dict)
    runway: dict[str, int] = field(default_factory=dict)
    punctuality: Punctuality = field(default_factory=Punctuality)
    standing: dict[str, set[str]] = field(default_factory=dict)  # code -> customers (the sync's flags agree)
    top_n: int = 10

    def standing_counts(self) -> dict[str, int]:
        """Customers per standing code (every code, zero included)."""
        return {code: len(self.standing.get(code, ())) for code in CODES}

    def top(self, currency: str) -> list[AccountRow]:
        """The largest balances in a currency."""
        rows = [r for r in self.accounts if r.currency == currency and r.balance > 0]
        return sorted(rows, key=lambda r: (-r.balance, r.customer))[: self.top_n]

    def running_out(self) -> list[AccountRow]:
        """Accounts whose runway is within `within_days`, soonest first."""
        rows = [r for r in self.accounts if r.runway is not None and r.runway <= self.within_days]
        return sorted(rows, key=lambda r: (r.runway or 0, r.customer, r.currency))

    def riskiest(self, limit: int | None = None) -> list[AccountRow]:
        """Accounts by risk score, highest first (score > 0 only)."""
        rows = sorted((r for r in self.accounts if r.risk > 0), key=lambda r:
                      (-r.risk, r.customer, r.currency))
        return rows[:limit] if limit else rows

    def late_payers(self) -> list[AccountRow]:
        """Accounts with an overdue or late payment, worst first."""
        rows = [r for r in self.accounts if r.late or r.overdue]
        return sorted(rows, key=lambda r: (-len(r.overdue), -(r.avg_days_late() or 0), r.customer))

    def to_dict(self, *, customers: bool = True) -> dict[str, Any]:
        """JSON form; `customers=False` leaves out the per-account list."""
        def _groups(data: dict[str, dict[str, Group]]) -> dict[str, Any]:
            return {cur: {name: {"customers": g.customers, "liability": fmt(g.liability, cur)}
                          for name, g in sorted(by.items())} for cur, by in sorted(data.items())}
        flags: dict[str, Any] = {}
        for cur, by in sorted(self.by_flag.items()):
            for name, g in sorted(by.items()):
                flags.setdefault(name,
                                 {})[cur] = {"customers": g.customers, "liability": fmt(g.liability, cur)}
        doc: dict[str, Any] = {
            "as_of": self.as_of.isoformat(), "window_days": self.window_days, "trend_days": self.trend_days,
            "within_days": self.within_days, "rules": self.rules_source,
            "currencies": [s.to_dict() for _, s in sorted(self.currencies.items())],
            "monthly_consumption": {cur: [{"month": m, "consumed": fmt(v, cur)} for m, v in rows]
                                    for cur, rows in sorted(self.monthly.items())},
            "by_tier": _groups(self.by_tier), "by_owner": _groups(self.by_owner), "by_flag": flags,
            "runway_distribution": self.runway,
            "running_out": [{"customer": r.customer, "currency": r.currency, "runway_days": r.runway,
                             "balance": fmt(r.balance, r.currency)} for r in self.running_out()],
            "punctuality": self.punctuality.to_dict(),
            "standing": {code: {"customers": n} for code, n in self.standing_counts().items()},
            "top_customers": {cur: [{"customer": r.customer, "name": r.name, "balance": fmt(r.balance, cur)}
                                    for r in self.top(cur)] for cur in sorted(self.currencies)},
        }
        if customers:
            doc["customers"] = [r.to_dict() for r in self.accounts]
        return doc
