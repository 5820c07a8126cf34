from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import InvalidInput
from connector.money import allocate, fmt, parse_amount, to_minor


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("100", "CNY", Decimal("100.00")), ("0.01", "USD", Decimal("0.01")), ("1,234.5", "EUR", Decimal("1234.50")),
    ("500", "JPY", Decimal("500")), (Decimal("2.500"), "CNY", Decimal("2.50")), (7, "usd", Decimal("7.00")),
    ("1.234", "KWD", Decimal("1.234")),
])
def test_parse_amount_quantizes_to_the_minor_unit(value: object, currency: str, expected: Decimal) -> None:
    amount = parse_amount(value, currency)
    assert amount == expected
    assert amount.as_tuple().exponent == expected.as_tuple().exponent


@pytest.mark.parametrize(("value", "currency", "reason"), [
    (1.5, "CNY", "floats are not accepted"), ("1.005", "CNY", "more than 2 decimal places"),
    ("1.5", "JPY", "more than 0 decimal places"), ("0", "CNY", "must not be zero"),
    ("-3", "CNY", "must be positive"), ("abc", "CNY", "not a decimal amount"), ("NaN", "CNY", "not a finite"),
    ("1", "XYZ", "unknown currency"), (True, "CNY", "floats are not accepted"),
])
def test_parse_amount_refuses_bad_money(value: object, currency: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_amount(value, currency)


def test_minor_units_round_trip() -> None:
    assert to_minor(Decimal("12.34"), "CNY") == 1234
    assert to_minor(Decimal("500"), "JPY") == 500
    assert fmt(1234, "CNY") == "12.34"
    assert fmt(-5, "USD") == "-0.05"
    assert fmt(500, "JPY") == "500"


@given(st.integers(min_value=0, max_value=10**12), st.lists(st.integers(min_value=0, max_value=10**6), max_size=20))
def test_allocate_sums_exactly(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    if weights and sum(weights):
        assert sum(parts) == total
        assert all(p >= 0 for p in parts)


def test_request_hash_matches_the_generic_canonical_form() -> None:
    from datetime import UTC, datetime

    from connector.ledger.ops import make_request
    from connector.ledger.plan import payload_hash

    req = make_request("deposit", "c", "10.5", "CNY", "k", expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                       source=("zoho", "Payments:1"))
    assert req.hash() == payload_hash("deposit", req.payload())
    other = make_request("consume", "c", "10.5", "CNY", "k")
    assert other.hash() == payload_hash("consume", other.payload())
