"""Pure rules: tier (with hysteresis), runway, points and the audit flags of one customer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from connector.ledger.standing import Standing
from connector.mapping.models import Mapping, Tiers
from connector.money import from_minor

ENDED = ("ended", "Closed Lost")  # contract statuses that are no longer live (picked values)


@dataclass(frozen=True)
class Flag:
    """One open condition; `marker` is stable while the condition lasts (it keys the task)."""

    code: str
    marker: str
    detail: str


@dataclass
class Facts:
    """Everything the rules look at for one customer, in its primary currency."""

    customer: str
    name: str
    currency: str | None
    deleted: bool = False
    has_account: bool = False
    balance: Decimal = Decimal(0)
    available: Decimal = Decimal(0)
    lifetime_prepaid: Decimal = Decimal(0)
    lifetime_consumed: Decimal = Decimal(0)
    consumed_tier_window: Decimal = Decimal(0)
    consumed_runway_window: Decimal = Decimal(0)
    last_activity: datetime | None = None
    contracts: list[dict[str, Any]] = field(default_factory=list)
    paid_by_contract: dict[str, Decimal] = field(default_factory=dict)
    payments: list[tuple[str, Decimal, str, date]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    prev_tier: str | None = None
    native_balance: Decimal | None = None
    standing: Standing | None = None  # the shared standing of this customer in `currency`
    contract_names: dict[str, str] = field(default_factory=dict)  # contract ref -> name, for details
    orphan_detail: str = ""


@dataclass
class Derived:
    """What the connector writes back and flags for one customer."""

    balance: Decimal
    available: Decimal
    tier: str
    runway_days: int | None
    points: Decimal | None
    lifetime_prepaid: Decimal
    flags: list[Flag]


def _metric(facts: Facts, name: str) -> Decimal | None:
    if name.startswith("field:"):
        raw = facts.extras.get(name.removeprefix("field:"))
        try:
            return Decimal(str(raw)) if raw not in (None, "") else None
        except ArithmeticError:
            return None
    return {
        "lifetime_prepaid": facts.lifetime_prepaid, "balance": facts.balance, "available": facts.available,
        "consumed": facts.consumed_tier_window
    }[name]


def tier_of(facts: Facts, tiers: Tiers) -> str:
    """Highest tier whose minimums hold; thresholds above the current tier are raised and those at or
    below it lowered by `hysteresis_pct`, so a customer near a boundary keeps its tier."""
    names = [level.name for level in tiers.levels]
    current = names.index(facts.prev_tier) if facts.prev_tier in names else -1
    h = tiers.hysteresis_pct / 100
    best = names[0]
    for i, level in enumerate(tiers.levels):
        factor = (1 + h) if i > current else (1 - h)
        ok = True
        for metric, minimum in level.min.items():
            value = _metric(facts, metric)
            if value is None or value < minimum * factor:
                ok = False
                break
        if ok:
            best = level.name
    return best


def runway_days(facts: Facts, window_days: int) -> int | None:
    """Days until the balance runs out at the recent daily consumption; None without consumption."""
    if facts.consumed_runway_window <= 0:
        return None
    if facts.balance <= 0:
        return 0
    daily = facts.consumed_runway_window / window_days
    return int((facts.balance / daily).to_integral_value(rounding=ROUND_FLOOR))


def _d(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else value if isinstance(
        value, date) else None


def flags_of(facts: Facts, m: Mapping, today: date) -> list[Flag]:
    """The state flags (not the event flags) that hold for `facts` today."""
    r = m.rules
    out: list[Flag] = []
    key = facts.customer
    cur = facts.currency or ""

    def add(code: str, detail: str) -> None:
        out.append(Flag(code, f"ps:{code}:{key}", detail))

    live = [c for c in facts.contracts if c.get("status") not in ENDED]
    for c in live:
        agreed = Decimal(c["prepay_amount"]) if c.get("prepay_amount") else None
        due = _d(c.get("due_date"))
        if agreed is None:
            continue
        paid = facts.paid_by_contract.get(c["crm_id"], Decimal(0))
        past_due = due is not None and today > due + timedelta(days=r.overdue_grace_days)
        if paid and abs(paid - agreed) > r.mismatch_tolerance and (paid > agreed or past_due):
            add("amount_mismatch", f"contract {c.get('name') or c['crm_id']}: CRM amount {agreed} {cur}, "
                                   f"ledger deposits {paid} {cur}")
    if facts.native_balance is not None and abs(facts.native_balance - facts.balance) > r.mismatch_tolerance:
        out.append(
            Flag(
                "amount_mismatch",
                f"ps:amount_mismatch:{key}:native",  # apart from contract mismatches
                f"CRM prepayment balance {facts.native_balance} {cur}, ledger balance {facts.balance} {cur}"))
    out += standing_flags(facts, m)
    if facts.deleted or facts.standing is not None and facts.standing.orphaned:
        return _dedupe(out)
    newest = max(live, key=lambda c: _d(c.get("valid_from")) or date.min, default=None)
    threshold = r.low_balance_amount
    if r.use_contract_threshold and newest and newest.get("low_balance_threshold"):
        threshold = Decimal(newest["low_balance_threshold"])
    if facts.balance < 0:
        add("negative", f"balance {facts.balance} {cur} (overdrawn)")
    elif facts.lifetime_prepaid > 0 and facts.balance <= threshold:
        add("low_balance", f"balance {facts.balance} {cur} at or below {threshold} {cur}")
    if facts.balance > 0 and facts.last_activity is not None and \
            facts.last_activity.date() < today - timedelta(days=r.dormant_days):
        add("dormant", f"no ledger activity since {facts.last_activity.date()}")
    seen: dict[tuple[Decimal, str], tuple[str, date]] = {}
    for crm_id, amount, currency, at in sorted(facts.payments, key=lambda p: (p[3], p[0])):
        prior = seen.get((amount, currency))
        if prior and (at - prior[1]).days <= r.duplicate_window_days:
            out.append(Flag("duplicate_payment", f"ps:duplicate_payment:{key}:{crm_id}",
                            f"payments {prior[0]} and {crm_id}: {amount} {currency} within "
                            f"{r.duplicate_window_days} days"))
        seen[(amount, currency)] = (crm_id, at)
    return _dedupe(out)


LOT_EXPIRY_NOTE = {"none": "the money stays spendable (mapping lot_expiry: none)",
                   "valid_until": "its lots expire with the contract (mapping lot_expiry: valid_until)"}


def standing_flags(facts: Facts, m: Mapping) -> list[Flag]:
    """The flags of the shared standing (`connector.ledger.standing`): overdue, expiring_soon, expired,
    orphaned.

    The report and the statement count the same standing, so these flags and their figures agree."""
    st = facts.standing
    if st is None:
        return []
    key, cur = facts.customer, facts.currency or ""
    out: list[Flag] = []
    if st.overdue:
        out.append(Flag("overdue", f"ps:overdue:{key}", "; ".join(
            f"contract {facts.contract_names.get(p.contract_ref) or p.contract_ref or '(customer terms)'}: "
            + (f"{from_minor(p.agreed, cur)} {cur} " if p.agreed is not None else "")
            + f"due {p.due_date}, unpaid {p.days_late} days" for p in st.overdue)))
    ends = st.ends
    name = facts.contract_names.get(st.ends_ref) or st.ends_ref
    contract = f"contract {name}" if name else "contract"
    balance = from_minor(st.balance, cur)
    note = LOT_EXPIRY_NOTE[m.lot_expiry]
    if st.expired:
        out.append(
            Flag("expired", f"ps:expired:{key}", f"{contract} ended {ends}; {balance} {cur} unused; {note}"))
    if st.expiring:
        out.append(Flag("expiring_soon", f"ps:expiring_soon:{key}",
                        f"{contract} ends {ends}; {balance} {cur} unused; {note}"))
    if st.orphaned:
        out.append(Flag("orphaned", f"ps:orphaned:{key}", facts.orphan_detail or
                        f"customer deleted in the CRM; the ledger keeps {balance} {cur}"))
    return out


def _dedupe(flags: list[Flag]) -> list[Flag]:
    by_marker: dict[str, Flag] = {}
    for f in flags:
        if f.marker in by_marker:
            f = Flag(f.code, f.marker, by_marker[f.marker].detail + "; " + f.detail)
        by_marker[f.marker] = f
    return list(by_marker.values())


def derive(facts: Facts, m: Mapping, today: date) -> Derived:
    """Balance, tier, runway, points and state flags of one customer."""
    points = None
    if m.points is not None:
        raw = (facts.lifetime_prepaid * m.points.per_prepaid_unit
               + facts.lifetime_consumed * m.points.per_consumed_unit)
        points = raw.to_integral_value(rounding=ROUND_FLOOR)
    return Derived(balance=facts.balance, available=facts.available, tier=tier_of(facts, m.tiers),
                   runway_days=runway_days(facts, m.rules.runway_window_days), points=points,
                   lifetime_prepaid=facts.lifetime_prepaid, flags=flags_of(facts, m, today))
