"""What a customer could get back: under the contract's refund policy, and under the rules in force.

The contract figure is exactly what the ledger's refund path would allow (`rules.refundable_caps`,
minus credit-line debt, minus the fee). The rules figure applies the `[compliance]` table:
a 'none' policy is void where forfeiture is forbidden (paid lots count as refundable even when
flagged otherwise, and expired paid money is still owed); pro-rata stays pro-rata for lots with a
validity window; with `discount_at_paid_price`, the remaining value (paid plus granted lots) is
valued at the price actually paid: value x paid / (paid + granted), rounded down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from connector.compliance.rules import ComplianceRules
from connector.ledger.rules import AccountState, LotState, refund_fee, refundable_caps

PAID_KINDS = ("deposit", "reverse")


@dataclass(slots=True)
class RefundFigures:
    """Refund payouts (minor units) for one account, and why they differ."""

    contract: int
    rules: int
    policy: str
    rules_policy: str
    notes: list[str] = field(default_factory=list)


def is_granted(kind: str, refundable: bool) -> bool:
    """Granted (free) value: a positive adjustment that is not refundable."""
    return kind == "adjust" and not refundable


def _payout(caps_total: int, debt: int, policy: str, fee_pct: Decimal) -> int:
    gross = max(0, caps_total - debt)
    return gross - (refund_fee(gross, fee_pct) if policy == "fee" else 0)


def refund_figures(lots: list[tuple[LotState, str]], *, paid: int, granted: int, debt: int, policy: str,
                   fee_pct: Decimal, rules: ComplianceRules, at: datetime,
                   forfeited: int = 0) -> RefundFigures:
    """Refund payouts at `at` for an account's open lots ((state, kind of the creating entry))."""
    states = [lot for lot, _ in lots]
    state = AccountState(0, "", "", 0, debt, 0, states)
    contract = 0 if policy == "none" else _payout(sum(refundable_caps(state, policy, at).values()), debt,
                                                  policy, fee_pct)
    notes: list[str] = []
    rules_policy = policy
    if policy == "none" and rules.forbid_forfeiture:
        rules_policy = "full"
        notes.append("a 'no refund' term is void where forfeiture is forbidden")
    eff_pct = fee_pct
    if rules.max_refund_fee_pct is not None and fee_pct > rules.max_refund_fee_pct:
        eff_pct = rules.max_refund_fee_pct
        notes.append(f"refund fee capped at {rules.max_refund_fee_pct}%")
    discount = rules.discount_at_paid_price and granted > 0 and paid > 0
    counted: list[LotState] = []
    for lot, kind in lots:
        granted_lot = is_granted(kind, lot.refundable)
        if granted_lot:
            if discount:
                counted.append(replace(lot, refundable=True))
        elif rules.forbid_forfeiture and kind in PAID_KINDS and not lot.refundable:
            counted.append(replace(lot, refundable=True))
            notes.append(
                f"lot {lot.id} is paid money; 'non-refundable' is void where forfeiture is forbidden")
        else:
            counted.append(lot)
    rules_state = AccountState(0, "", "", 0, debt, 0, counted)
    value = sum(refundable_caps(rules_state, rules_policy, at).values())
    if rules.forbid_forfeiture and rules_policy != "pro_rata":
        expired = sum(
            lot.remaining for lot, kind in lots
            if lot.expires_at is not None and lot.expires_at <= at and not is_granted(kind, lot.refundable))
        if expired or forfeited:
            notes.append("expired paid money is still owed where forfeiture is forbidden")
        value += expired + forfeited
    if discount:
        value = value * paid // (paid + granted)
        notes.append(f"remaining value at the paid price ({paid} paid for {paid + granted} of value)")
    return RefundFigures(contract, _payout(value, debt, rules_policy, eff_pct), policy, rules_policy, notes)
