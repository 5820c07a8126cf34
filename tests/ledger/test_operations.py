"""Ledger operations on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from connector.errors import (CurrencyMismatch, IdempotencyConflict, InsufficientBalance, InvalidInput,
                              NotFound, RefundRefused, ReversalRefused)
from connector.ledger import Ledger
from connector.ledger.verify import verify

C = "zoho:Accounts:4876876000000123"


def bal(ledger: Ledger, customer: str = C, currency: str = "CNY") -> Decimal:
    return ledger.balance(customer, currency)[0].balance


def test_deposit_then_replay_is_exists_and_writes_nothing(ledger: Ledger) -> None:
    first = ledger.deposit(C, "100.00", "CNY", "pay-1")
    again = ledger.deposit(C, "100.00", "CNY", "pay-1")
    assert (first.status, again.status) == ("created", "exists")
    assert again.data == first.data
    assert bal(ledger) == Decimal("100.00")
    assert verify(ledger.engine).counts["entries"] == 1


def test_same_key_other_payload_is_refused(ledger: Ledger) -> None:
    ledger.deposit(C, "100.00", "CNY", "pay-1")
    with pytest.raises(IdempotencyConflict, match="pay-1"):
        ledger.deposit(C, "100.01", "CNY", "pay-1")
    with pytest.raises(IdempotencyConflict):
        ledger.consume(C, "100.00", "CNY", "pay-1")
    with pytest.raises(IdempotencyConflict):
        ledger.deposit("other", "100.00", "CNY", "pay-1")
    assert bal(ledger) == Decimal("100.00")


def test_drawdown_order_priority_expiry_age_id(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    now = clock()
    a = ledger.deposit(C, "10", "CNY", "a", effective_at=now - timedelta(days=3))  # never expires
    b = ledger.deposit(C, "10", "CNY", "b", expires_at=now + timedelta(days=30))
    c = ledger.deposit(C, "10", "CNY", "c", expires_at=now + timedelta(days=10))
    d = ledger.deposit(C, "10", "CNY", "d", priority=10)  # lower priority number goes first
    lot = {k: r.data["entries"][0]["lot_id"] for k, r in dict(a=a, b=b, c=c, d=d).items()}
    r = ledger.consume(C, "35", "CNY", "use")
    moved = [(al["lot_id"], al["amount"]) for al in r.data["entries"][0]["allocations"]]
    assert moved == [(lot["d"], "-10.00"), (lot["c"], "-10.00"), (lot["b"], "-10.00"), (lot["a"], "-5.00")]


def test_consume_refuses_past_balance_and_names_customer(ledger: Ledger) -> None:
    ledger.deposit(C, "50", "CNY", "p")
    with pytest.raises(InsufficientBalance, match=rf"60.00 CNY for customer {C}.*only 50.00 CNY available"):
        ledger.consume(C, "60", "CNY", "u")
    assert bal(ledger) == Decimal("50.00")


def test_credit_line_allows_negative_to_the_limit_and_deposits_repay_first(ledger: Ledger) -> None:
    ledger.set_terms(C, "CNY", credit_limit="30")
    ledger.deposit(C, "50", "CNY", "p")
    ledger.consume(C, "80", "CNY", "u1")
    assert bal(ledger) == Decimal("-30.00")
    with pytest.raises(InsufficientBalance):
        ledger.consume(C, "0.01", "CNY", "u2")
    r = ledger.deposit(C, "100", "CNY", "p2")
    allocs = r.data["entries"][0]["allocations"]
    assert {(a["lot_id"] is None, a["amount"]) for a in allocs} >= {(True, "30.00")}
    view = ledger.balance(C, "CNY")[0]
    assert (view.balance, view.debt, view.available) == (Decimal("70.00"), Decimal("0.00"), Decimal("100.00"))
    assert verify(ledger.engine).ok


def test_refund_policies(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    ledger.deposit(C, "100", "CNY", "paid")
    ledger.deposit(C, "50", "CNY", "promo", refundable=False)
    with pytest.raises(RefundRefused, match="only 100.00 CNY is refundable"):
        ledger.refund(C, "100.01", "CNY", "r0")
    ledger.set_terms(C, "CNY", refund_policy="fee", refund_fee_pct="2.5")
    r = ledger.refund(C, "40", "CNY", "r1")
    assert (r.data["payout"], r.data["fee"]) == ("39.00", "1.00")
    assert [e["kind"] for e in r.data["entries"]] == ["refund", "refund_fee"]
    assert bal(ledger) == Decimal("110.00")
    ledger.set_terms(C, "CNY", refund_policy="none")
    with pytest.raises(RefundRefused, match="'none'"):
        ledger.refund(C, "1", "CNY", "r2")


def test_pro_rata_refund_follows_unused_validity(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    start = clock()
    ledger.set_terms(C, "CNY", refund_policy="pro_rata")
    ledger.deposit(C, "1200", "CNY", "card", expires_at=start + timedelta(days=360))
    clock.advance(days=90)
    with pytest.raises(RefundRefused, match="only 900.00 CNY is refundable"):
        ledger.refund(C, "900.01", "CNY", "r1")
    ledger.refund(C, "900", "CNY", "r2")
    assert bal(ledger) == Decimal("300.00")


def test_adjust_needs_memo_and_is_signed(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput, match="memo"):
        ledger.adjust(C, "5", "CNY", "adj0", memo=" ")
    ledger.adjust(C, "20", "CNY", "adj1", memo="goodwill")
    ledger.adjust(C, "-5", "CNY", "adj2", memo="fix typo")
    assert bal(ledger) == Decimal("15.00")
    with pytest.raises(RefundRefused):  # goodwill credit is not refundable by default
        ledger.refund(C, "1", "CNY", "r")


def test_reverse_posts_the_opposite_once(ledger: Ledger) -> None:
    ledger.deposit(C, "100", "CNY", "p")
    use = ledger.consume(C, "30", "CNY", "u")
    rev = ledger.reverse(use.entry_ids[0], "rev-u", memo="wrong customer")
    assert rev.data["entries"][0]["amount"] == "30.00"
    assert bal(ledger) == Decimal("100.00")
    assert ledger.reverse(use.entry_ids[0], "rev-u").status == "exists"
    with pytest.raises(ReversalRefused, match="already reversed"):
        ledger.reverse(use.entry_ids[0], "rev-u-2")
    with pytest.raises(ReversalRefused, match="itself a reversal"):
        ledger.reverse(rev.entry_ids[0], "rev-rev")
    original = ledger.entry(use.entry_ids[0])
    assert original["amount"] == "-30.00" and original["kind"] == "consume"


def test_reverse_of_spent_deposit_is_refused(ledger: Ledger) -> None:
    dep = ledger.deposit(C, "100", "CNY", "p")
    ledger.consume(C, "30", "CNY", "u")
    with pytest.raises(ReversalRefused, match="has only 70.00 CNY left"):
        ledger.reverse(dep.entry_ids[0], "rev-p")
    with pytest.raises(NotFound):
        ledger.reverse(999, "rev-x")


def test_expiry_takes_exactly_the_remainder_once(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    start = clock()
    ledger.deposit(C, "100", "CNY", "p", expires_at=start + timedelta(days=30))
    ledger.deposit(C, "40", "CNY", "q")
    ledger.consume(C, "30", "CNY", "u")
    clock.advance(days=29)
    assert ledger.expire() == []
    clock.advance(days=2)
    with pytest.raises(InsufficientBalance):  # the expired lot is not spendable even before the sweep
        ledger.consume(C, "41", "CNY", "u2")
    swept = ledger.expire()
    assert [r.data["amount"] for r in swept] == ["70.00"]
    assert swept[0].data["entries"][0]["effective_at"].startswith(
        (start + timedelta(days=30)).date().isoformat())
    assert ledger.expire() == []
    assert bal(ledger) == Decimal("40.00")
    assert verify(ledger.engine).ok


def test_balance_as_of_and_known_at(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    t0 = clock()
    ledger.deposit(C, "100", "CNY", "p")
    clock.advance(days=10)
    ledger.consume(C, "25", "CNY", "u", effective_at=t0 + timedelta(days=2))  # backdated
    assert ledger.balance(C, "CNY", as_of=t0 + timedelta(days=1))[0].balance == Decimal("100.00")
    assert ledger.balance(C, "CNY", as_of=t0 + timedelta(days=3))[0].balance == Decimal("75.00")
    known_before = ledger.balance(C, "CNY", as_of=t0 + timedelta(days=3), known_at=t0 + timedelta(days=5))
    assert known_before[0].balance == Decimal("100.00")
    statement = ledger.history(C, "CNY", start=t0 + timedelta(days=1))[0]
    assert (statement.opening, statement.closing) == (Decimal("100.00"), Decimal("75.00"))


def test_future_effective_time_is_refused(ledger: Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="in the future"):
        ledger.deposit(C, "1", "CNY", "f", effective_at=clock() + timedelta(days=1))


def test_currencies_never_mix(ledger: Ledger) -> None:
    ledger.deposit(C, "100", "CNY", "p")
    with pytest.raises(CurrencyMismatch, match="holds CNY, not USD"):
        ledger.consume(C, "1", "USD", "u")
    ledger.deposit(C, "5", "USD", "pu")
    assert {v.currency: v.balance
            for v in ledger.balance(C)} == {"CNY": Decimal("100.00"), "USD": Decimal("5.00")}


def test_jpy_has_no_minor_unit(ledger: Ledger) -> None:
    ledger.deposit(C, "1000", "JPY", "p")
    with pytest.raises(InvalidInput, match="decimal places"):
        ledger.consume(C, "0.5", "JPY", "u")
    assert ledger.balance(C, "JPY")[0].balance == Decimal("1000")


def test_entries_are_immutable_in_the_database(ledger: Ledger) -> None:
    ledger.deposit(C, "100", "CNY", "p")
    for sql in ("UPDATE entries SET amount = 1", "DELETE FROM entries", "DELETE FROM postings",
                "UPDATE allocations SET amount = 5"):
        with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
            with ledger.engine.begin() as conn:
                conn.execute(text(sql))


def test_check_constraints_are_the_last_defence(ledger: Ledger) -> None:
    ledger.deposit(C, "100", "CNY", "p")
    with pytest.raises((IntegrityError, DBAPIError)):
        with ledger.engine.begin() as conn:
            conn.execute(text("UPDATE lots SET remaining = -1"))
    with pytest.raises((IntegrityError, DBAPIError)):
        with ledger.engine.begin() as conn:
            conn.execute(text("UPDATE lots SET remaining = amount + 1"))


def test_verify_finds_a_tampered_cache(ledger: Ledger) -> None:
    ledger.deposit(C, "100", "CNY", "p")
    ledger.consume(C, "10", "CNY", "u")
    assert verify(ledger.engine).ok
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET balance = balance + 1"))
        conn.execute(text("UPDATE lots SET remaining = remaining - 2"))
    report = verify(ledger.engine)
    checks = {p["check"] for p in report.problems}
    assert "account balance != sum of its entries" in checks
    assert "lot remaining != sum of its allocations" in checks


def test_unknown_customer_balance_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound, match="nobody"):
        ledger.balance("nobody")


def test_every_replay_returns_the_original_result(ledger: Ledger) -> None:
    ledger.set_terms(C, "CNY", refund_policy="fee", refund_fee_pct="10", credit_limit="5")
    calls = [
        lambda: ledger.deposit(C, "100", "CNY", "d", source=("zoho", "Payments:1")),
        lambda: ledger.consume(C, "30", "CNY", "c", memo="usage"),
        lambda: ledger.refund(C, "20", "CNY", "r"),
        lambda: ledger.adjust(C, "-5", "CNY", "a1", memo="fix"),
        lambda: ledger.adjust(C, "7", "CNY", "a2", memo="goodwill"),
        lambda: ledger.consume(C, "55", "CNY", "c2"),  # reaches into the credit line
    ]
    results = []
    for call in calls:
        first, again = call(), call()
        assert (first.status, again.status) == ("created", "exists")
        assert again.data == first.data
        results.append(first)
    consumed = results[1].entry_ids[0]
    rev = ledger.reverse(consumed, "rev")
    assert ledger.reverse(consumed, "rev").data == rev.data
