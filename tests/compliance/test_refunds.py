"""`connector.compliance.refunds`: the contract's refund figure against the one the rules in force allow.

Amounts are minor units. Lots are built by hand so each rule is seen on its own: 'none' voided where
forfeiture is forbidden, fee caps, non-refundable paid lots, expired paid money, granted value at the
paid price, pro-rata windows, and credit-line debt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.compliance.refunds import RefundFigures, is_granted, refund_figures
from connector.compliance.rules import ComplianceRules
from connector.ledger.rules import LotState

AT = datetime(2026, 6, 1, tzinfo=UTC)
LAX = ComplianceRules(forbid_forfeiture=False, discount_at_paid_price=False)  # the contract as written
STRICT = ComplianceRules()  # the defaults: forfeiture forbidden, granted value at the paid price


def lot(
    i: int,
    remaining: int,
    *,
    amount: int | None = None,
    refundable: bool = True,
    days_left: float | None = None,
    days_used: float = 30,
) -> LotState:
    expires = None if days_left is None else AT + timedelta(days=days_left)
    return LotState(
        i,
        amount if amount is not None else remaining,
        remaining,
        AT - timedelta(days=days_used),
        expires,
        refundable,
        0,
    )


def figures(
    lots: list[tuple[LotState, str]],
    *,
    paid: int = 0,
    granted: int = 0,
    debt: int = 0,
    policy: str = "full",
    fee: str = "0",
    rules: ComplianceRules = LAX,
    **kw: Any,
) -> RefundFigures:
    return refund_figures(
        lots,
        paid=paid,
        granted=granted,
        debt=debt,
        policy=policy,
        fee_pct=Decimal(fee),
        rules=rules,
        at=AT,
        **kw,
    )


@pytest.mark.parametrize(
    "kind,refundable,granted",
    [
        ("adjust", False, True),
        ("adjust", True, False),
        ("deposit", False, False),
        ("deposit", True, False),
        ("reverse", False, False),
    ],
)
def test_is_granted_means_a_non_refundable_adjustment(kind: str, refundable: bool, granted: bool) -> None:
    assert is_granted(kind, refundable) is granted


def test_full_policy_without_rules_pays_paid_lots_only() -> None:
    got = figures(
        [(lot(1, 5000), "deposit"), (lot(2, 1000, refundable=False), "adjust")], paid=5000, granted=1000
    )
    assert (got.contract, got.rules, got.policy, got.rules_policy, got.notes) == (
        5000,
        5000,
        "full",
        "full",
        [],
    )


def test_debt_is_taken_off_and_never_makes_a_negative_payout() -> None:
    assert figures([(lot(1, 5000), "deposit")], debt=1200).contract == 3800
    got = figures([(lot(1, 500), "deposit")], debt=1200)
    assert (got.contract, got.rules) == (0, 0)


def test_fee_policy_withholds_the_fee_rounded_half_even() -> None:
    got = figures([(lot(1, 1050), "deposit")], policy="fee", fee="5")  # 52.5 -> 52
    assert (got.contract, got.rules) == (998, 998)
    assert figures([(lot(1, 1070), "deposit")], policy="fee", fee="5").contract == 1070 - 54  # 53.5 -> 54


def test_a_fee_above_the_rules_cap_is_capped_for_the_rules_figure_only() -> None:
    rules = ComplianceRules(
        forbid_forfeiture=False, discount_at_paid_price=False, max_refund_fee_pct=Decimal("2")
    )
    got = figures([(lot(1, 10000), "deposit")], policy="fee", fee="10", rules=rules)
    assert (got.contract, got.rules) == (9000, 9800)
    assert got.notes == ["refund fee capped at 2%"]
    same = figures([(lot(1, 10000), "deposit")], policy="fee", fee="1", rules=rules)
    assert (same.contract, same.rules, same.notes) == (9900, 9900, [])


def test_no_refund_term_is_void_where_forfeiture_is_forbidden() -> None:
    lots = [(lot(1, 4000), "deposit")]
    lax = figures(lots, policy="none")
    assert (lax.contract, lax.rules, lax.rules_policy) == (0, 0, "none")
    strict = figures(lots, policy="none", rules=ComplianceRules(discount_at_paid_price=False))
    assert (strict.contract, strict.rules, strict.policy, strict.rules_policy) == (0, 4000, "none", "full")
    assert strict.notes == ["a 'no refund' term is void where forfeiture is forbidden"]


def test_a_non_refundable_paid_lot_counts_as_refundable_under_the_rules() -> None:
    lots = [(lot(7, 3000, refundable=False), "deposit"), (lot(8, 2000), "deposit")]
    got = figures(lots, rules=ComplianceRules(discount_at_paid_price=False))
    assert (got.contract, got.rules) == (2000, 5000)
    assert got.notes == ["lot 7 is paid money; 'non-refundable' is void where forfeiture is forbidden"]
    assert figures(lots).rules == 2000  # without the rule it stays out


def test_expired_paid_money_is_still_owed_but_expired_granted_value_is_not() -> None:
    lots = [
        (lot(1, 1000), "deposit"),
        (lot(2, 600, days_left=-1), "deposit"),
        (lot(3, 400, refundable=False, days_left=-1), "adjust"),
    ]
    got = figures(lots, rules=ComplianceRules(discount_at_paid_price=False))
    assert (got.contract, got.rules) == (1000, 1600)
    assert got.notes == ["expired paid money is still owed where forfeiture is forbidden"]


def test_forfeited_money_is_added_back_and_noted() -> None:
    got = figures(
        [(lot(1, 1000), "deposit")], forfeited=250, rules=ComplianceRules(discount_at_paid_price=False)
    )
    assert got.rules == 1250 and got.notes == [
        "expired paid money is still owed where forfeiture is forbidden"
    ]
    assert figures([(lot(1, 1000), "deposit")], forfeited=250).rules == 1000


def test_granted_value_is_refunded_at_the_paid_price_rounded_down() -> None:
    # 1000 paid bought 1300 of value; 700 paid and 300 granted remain: 1000 x 1000 / 1300 = 769.2 -> 769
    lots = [(lot(1, 700, amount=1000), "deposit"), (lot(2, 300, refundable=False), "adjust")]
    got = figures(lots, paid=1000, granted=300, rules=STRICT)
    assert (got.contract, got.rules) == (700, 769)
    assert got.notes == ["remaining value at the paid price (1000 paid for 1300 of value)"]


@pytest.mark.parametrize("paid,granted", [(1000, 0), (0, 300)])
def test_no_discount_without_both_paid_and_granted_value(paid: int, granted: int) -> None:
    lots = [(lot(1, 700, amount=1000), "deposit"), (lot(2, 300, refundable=False), "adjust")]
    got = figures(lots, paid=paid, granted=granted, rules=STRICT)
    assert got.rules == 700 and got.notes == []


def test_pro_rata_stays_pro_rata_and_expired_lots_are_not_added_back() -> None:
    # 30 of 90 days used: two thirds of 9000 (6000) is refundable, below the 8000 remaining.
    lots = [
        (lot(1, 8000, amount=9000, days_left=60, days_used=30), "deposit"),
        (lot(2, 500, days_left=-1), "deposit"),
    ]
    got = figures(lots, policy="pro_rata", rules=ComplianceRules(discount_at_paid_price=False))
    assert (got.contract, got.rules, got.rules_policy) == (6000, 6000, "pro_rata")
    assert got.notes == []


def test_lots_not_yet_effective_or_empty_pay_nothing() -> None:
    future = LotState(1, 900, 900, AT + timedelta(days=1), None, True, 0)
    empty = lot(2, 0, amount=500)
    got = figures([(future, "deposit"), (empty, "deposit")], rules=STRICT)
    assert (got.contract, got.rules) == (0, 0)
