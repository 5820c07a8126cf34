"""The derivation rules: tiers with hysteresis, runway, points and every state flag."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS
from connector.sync.derive import Facts, derive, runway_days, tier_of

M = load_mapping(DEFAULTS / "zoho.yaml")
TODAY = date(2026, 3, 1)


def facts(**kw: object) -> Facts:
    base = dict(customer="zoho:Accounts:1", name="Acme", currency="USD", has_account=True,
                balance=Decimal("3000"), lifetime_prepaid=Decimal("3000"),
                last_activity=datetime(2026, 2, 20, tzinfo=UTC))
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def codes(f: Facts) -> set[str]:
    return {flag.code for flag in derive(f, M, TODAY).flags}


def test_tier_hysteresis_holds_at_the_boundary() -> None:
    # silver needs 1000; 5% hysteresis: reach 1050 to move up, fall below 950 to move down
    assert tier_of(facts(lifetime_prepaid=Decimal("1040"), prev_tier="bronze"), M.tiers) == "bronze"
    assert tier_of(facts(lifetime_prepaid=Decimal("1050"), prev_tier="bronze"), M.tiers) == "silver"
    assert tier_of(facts(lifetime_prepaid=Decimal("960"), prev_tier="silver"), M.tiers) == "silver"
    assert tier_of(facts(lifetime_prepaid=Decimal("940"), prev_tier="silver"), M.tiers) == "bronze"
    # platinum needs both lifetime 20000 and balance 5000
    assert tier_of(facts(lifetime_prepaid=Decimal("30000"), balance=Decimal("100")), M.tiers) == "gold"


def test_runway_and_points() -> None:
    assert runway_days(facts(balance=Decimal("300"), consumed_runway_window=Decimal("300")), 30) == 30
    assert runway_days(facts(consumed_runway_window=Decimal(0)), 30) is None
    assert runway_days(facts(balance=Decimal("-5"), consumed_runway_window=Decimal("10")), 30) == 0
    fx = load_mapping(DEFAULTS / "fxiaoke.yaml")
    d = derive(facts(lifetime_prepaid=Decimal("1000"), lifetime_consumed=Decimal("200")), fx, TODAY)
    assert d.points == Decimal(11)


def test_balance_flags() -> None:
    assert "negative" in codes(facts(balance=Decimal("-1")))
    assert "low_balance" in codes(facts(balance=Decimal("50")))
    assert not {"low_balance", "negative"} & codes(facts(balance=Decimal("500")))
    contract = {"crm_id": "9", "prepay_amount": "1000", "valid_from": "2025-06-01", "valid_until": "2026-03-20",
                "low_balance_threshold": "600", "due_date": "2026-02-01"}
    assert "low_balance" in codes(facts(balance=Decimal("500"), contracts=[contract],
                                        paid_by_contract={"9": Decimal("1000")}))
    assert "expiring_soon" in codes(facts(contracts=[contract], paid_by_contract={"9": Decimal("1000")}))
    ended = {**contract, "valid_until": "2026-01-01"}
    assert "expired" in codes(facts(contracts=[ended], paid_by_contract={"9": Decimal("1000")}))
    assert "dormant" in codes(facts(last_activity=datetime(2025, 1, 1, tzinfo=UTC)))


def test_contract_flags() -> None:
    c = {"crm_id": "9", "name": "Plan", "prepay_amount": "1000", "due_date": "2026-02-01"}
    assert {"overdue"} <= codes(facts(contracts=[c], paid_by_contract={}))
    both = codes(facts(contracts=[c], paid_by_contract={"9": Decimal("400")}))
    assert {"overdue", "amount_mismatch"} <= both
    assert "amount_mismatch" in codes(facts(contracts=[{**c, "due_date": "2026-12-01"}],
                                            paid_by_contract={"9": Decimal("1200")}))
    assert not {"overdue", "amount_mismatch"} & codes(facts(contracts=[c], paid_by_contract={"9": Decimal("1000")}))


def test_duplicate_and_orphan_flags() -> None:
    pays = [("a", Decimal("100"), "USD", date(2026, 2, 1)), ("b", Decimal("100"), "USD", date(2026, 2, 3)),
            ("c", Decimal("100"), "USD", date(2026, 3, 1))]
    flags = [f for f in derive(facts(payments=pays), M, TODAY).flags if f.code == "duplicate_payment"]
    assert len(flags) == 1 and "a and b" in flags[0].detail
    assert codes(facts(deleted=True, balance=Decimal("10"))) == {"orphaned"}
    assert codes(facts(deleted=True, balance=Decimal("0"))) == set()
