"""The derivation rules: tiers with hysteresis, runway, points and every state flag."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from connector.ledger.standing import ContractTerm, Standing, StandingRules, standing_of
from connector.mapping import load_mapping
from connector.money import to_minor
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


def standing(balance: str = "3000", terms: tuple[ContractTerm, ...] = (),
             deposits: tuple[tuple[str, str], ...] = (), orphaned: bool = False) -> Standing:
    """The shared standing (connector.ledger.standing) of customer 1 in USD, as reconcile hands it over."""
    paid = [(datetime.fromisoformat(at).replace(tzinfo=UTC), to_minor(Decimal(a), "USD"))
            for at, a in deposits]
    return standing_of("zoho:Accounts:1", "USD", terms, paid, to_minor(Decimal(balance), "USD"), TODAY,
                       StandingRules(M.rules.overdue_grace_days, M.rules.expiring_soon_days),
                       orphaned=orphaned)


def term(until: str | None = None, due: str | None = None, agreed: str | None = "1000",
         ref: str = "zoho:Deals:9", active: bool = True) -> ContractTerm:
    return ContractTerm(ref,
                        to_minor(Decimal(agreed), "USD") if agreed else None,
                        date.fromisoformat(due) if due else None, date(2025, 6, 1),
                        date.fromisoformat(until) if until else None, active)


def test_balance_flags() -> None:
    assert "negative" in codes(facts(balance=Decimal("-1")))
    assert "low_balance" in codes(facts(balance=Decimal("50")))
    assert not {"low_balance", "negative"} & codes(facts(balance=Decimal("500")))
    contract = {
        "crm_id": "9", "prepay_amount": "1000", "valid_from": "2025-06-01", "valid_until": "2026-03-20",
        "low_balance_threshold": "600", "due_date": "2026-02-01"
    }
    assert "low_balance" in codes(facts(balance=Decimal("500"), contracts=[contract],
                                        paid_by_contract={"9": Decimal("1000")}))
    assert "dormant" in codes(facts(last_activity=datetime(2025, 1, 1, tzinfo=UTC)))


def test_expiry_flags_come_from_the_standing_and_say_what_happens_to_the_money() -> None:
    soon = derive(
        facts(standing=standing(terms=(term("2026-03-20"), )), contract_names={"zoho:Deals:9": "Plan"}), M,
        TODAY).flags
    [flag] = [f for f in soon if f.code == "expiring_soon"]
    assert flag.detail == "contract Plan ends 2026-03-20; 3000.00 USD unused; the money stays spendable " \
                          "(mapping lot_expiry: none)"
    assert "expired" in codes(facts(standing=standing(terms=(term("2026-01-01"),))))
    assert not {"expired", "expiring_soon"} & codes(facts(standing=standing(terms=(term("2026-09-01"),))))
    assert not {"expired", "expiring_soon"} & codes(
        facts(standing=standing("0", terms=(term("2026-01-01"), ))))
    # an ended contract does not decide: the live one does
    assert "expired" not in codes(facts(standing=standing(terms=(term("2026-01-01", active=False),))))


def test_contract_flags() -> None:
    c = {"crm_id": "9", "name": "Plan", "prepay_amount": "1000", "due_date": "2026-02-01"}
    due = (term(due="2026-02-01"),)
    assert {"overdue"} <= codes(facts(contracts=[c], paid_by_contract={}, standing=standing(terms=due)))
    both = codes(facts(contracts=[c], paid_by_contract={"9": Decimal("400")},
                       standing=standing(terms=due, deposits=(("2026-01-20", "400"),))))
    assert {"overdue", "amount_mismatch"} <= both
    assert "amount_mismatch" in codes(facts(contracts=[{**c, "due_date": "2026-12-01"}],
                                            paid_by_contract={"9": Decimal("1200")}))
    paid = standing(terms=due, deposits=(("2026-01-20", "1000"),))
    assert not {"overdue", "amount_mismatch"} & codes(
        facts(contracts=[c], paid_by_contract={"9": Decimal("1000")}, standing=paid))


def test_one_contract_counts_once_and_a_paid_customer_is_not_overdue() -> None:
    """Issue 11.4: the customer-level terms row (no due date since migration 0004) adds no second due date."""
    customer_row = ContractTerm("", None, None, None, None)
    st = standing(terms=(term(due="2026-02-01"), customer_row), deposits=(("2026-01-20", "1000"),))
    assert [p.status for p in st.payments] == ["on_time"] and st.codes() == ()
    # terms set by hand (no contract rows) still count
    hand = standing(terms=(ContractTerm("", 100_000, date(2026, 2, 1), None, None),))
    assert hand.codes() == ("overdue",)


def test_duplicate_and_orphan_flags() -> None:
    pays = [("a", Decimal("100"), "USD", date(2026, 2, 1)), ("b", Decimal("100"), "USD", date(2026, 2, 3)),
            ("c", Decimal("100"), "USD", date(2026, 3, 1))]
    flags = [f for f in derive(facts(payments=pays), M, TODAY).flags if f.code == "duplicate_payment"]
    assert len(flags) == 1 and "a and b" in flags[0].detail
    assert codes(facts(deleted=True, balance=Decimal("10"),
                       standing=standing("10", orphaned=True))) == {"orphaned"}
    assert codes(facts(deleted=True, balance=Decimal("0"), standing=standing("0", orphaned=True))) == set()
    # an orphan's expired contract is not flagged apart: `orphaned` says it all
    assert codes(facts(deleted=True, standing=standing(terms=(term("2026-01-01"), ),
                                                       orphaned=True))) == {"orphaned"}
