import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import InvalidInput
from connector.money import MAX_MINOR, allocate, fmt, json_loads, max_amount, parse_amount, to_minor


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("100", "CNY", Decimal("100.00")),
    ("0.01", "USD", Decimal("0.01")),
    ("1234.5", "EUR", Decimal("1234.50")),
    ("500", "JPY", Decimal("500")),
    (Decimal("2.500"), "CNY", Decimal("2.50")),
    (7, "usd", Decimal("7.00")),
    ("1.234", "KWD", Decimal("1.234")),
])
def test_parse_amount_quantizes_to_the_minor_unit(value: object, currency: str, expected: Decimal) -> None:
    amount = parse_amount(value, currency)
    assert amount == expected
    assert amount.as_tuple().exponent == expected.as_tuple().exponent


@pytest.mark.parametrize(("value", "currency", "reason"), [
    (1.5, "CNY", "floats are not exact"),
    ("1.005", "CNY", "more than 2 decimal places"),
    ("1.5", "JPY", "more than 0 decimal places"),
    ("0", "CNY", "must not be zero"),
    ("-3", "CNY", "must be positive"),
    ("abc", "CNY", "is not an amount"),
    (Decimal("NaN"), "CNY", "not a finite"),
    ("1", "XYZ", "unknown currency"),
    (True, "CNY", "is not an amount"),
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


@given(st.integers(min_value=0, max_value=10**12),
       st.lists(st.integers(min_value=0, max_value=10**6), max_size=20))
def test_allocate_sums_exactly(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    if weights and sum(weights):
        assert sum(parts) == total
        assert all(p >= 0 for p in parts)


def test_request_hash_matches_the_generic_canonical_form() -> None:
    from datetime import UTC, datetime

    from connector.ledger.planners import make_request
    from connector.ledger.plan import payload_hash

    req = make_request("deposit", "c", "10.5", "CNY", "k", expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                       source=("zoho", "Payments:1"))
    assert req.hash() == payload_hash("deposit", req.payload())
    other = make_request("consume", "c", "10.5", "CNY", "k")
    assert other.hash() == payload_hash("consume", other.payload())


# -- the one strict grammar (issue 11.1) ------------------------------------------------------

@pytest.mark.parametrize(("text", "why"), [
    ("100,00", "',' is not accepted (no decimal commas"),
    ("1,000.00", "',' is not accepted"),
    ("1e5", "exponents ('e') are not accepted"),
    ("1E5", "exponents ('e') are not accepted"),
    ("1_000", "'_' is not accepted"),
    ("１００", "non-ASCII character '１' (U+FF11 FULLWIDTH DIGIT ONE)"),
    ("١٠٠", "non-ASCII character"),
    (" 100", "spaces around it"),
    ("100 ", "spaces around it"),
    ("100\n", "spaces around it"),
    ("+100", "'+' is not accepted"),
    ("1.2.3", "more than one '.'"),
    (".5", "digits on both sides"),
    ("5.", "digits on both sides"),
    ("", "it is empty"),
    ("NaN", "'N' is not accepted"),
    ("Infinity", "'I' is not accepted"),
    ("0x10", "'x' is not accepted"),
])
def test_text_outside_the_grammar_is_refused_showing_what_was_read(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, "CNY")
    message = caught.value.message
    assert message.startswith(f"amount: {text!r} is not an amount: ")
    assert why in message
    assert "accepted: ASCII digits 0-9 with at most one '.' and 2 decimals for CNY, e.g. 1234.50" in message


@pytest.mark.parametrize("text", ["-0", "-5", "-0.00", "-100.50"])
def test_every_negative_amount_gets_the_same_sign_rule(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, "CNY")
    assert caught.value.message == (
        f"amount: {text!r} is refused: the amount must be positive, written without a "
        "sign; accepted: ASCII digits 0-9 with at most one '.' and 2 decimals, e.g. 1234.50")


def test_signed_amounts_accept_a_leading_minus_only() -> None:
    assert parse_amount("-5.5", "CNY", allow_negative=True) == Decimal("-5.50")
    with pytest.raises(InvalidInput, match="must not be zero"):
        parse_amount("-0", "CNY", allow_negative=True)
    with pytest.raises(InvalidInput, match="only one leading '-'"):
        parse_amount("--5", "CNY", allow_negative=True)


@pytest.mark.parametrize(("value", "currency"), [
    ("10000000000000.00", "CNY"), ("99999999999999999999999.99", "CNY"), ("92233720368547758.07", "CNY"),
    ("1000000000000000", "JPY"), ("1000000000000.000", "KWD"), (10**20, "CNY"), (Decimal("1E+400"), "CNY"),
    (Decimal("-1E+400"), "CNY"), ("9" * 5000, "CNY"),
])
def test_amounts_above_the_limit_are_refused_naming_it(value: object, currency: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(value, currency, allow_negative=True)
    assert f"is above the limit of {max_amount(currency)} {currency} per amount" in caught.value.message
    assert len(caught.value.message) < 300


def test_the_limit_itself_is_accepted() -> None:
    assert max_amount("CNY") == "9999999999999.99" and max_amount("JPY") == "999999999999999"
    assert to_minor(parse_amount("9999999999999.99", "CNY"), "CNY") == MAX_MINOR
    assert to_minor(parse_amount("-999999999999.999", "KWD", allow_negative=True), "KWD") == -MAX_MINOR
    assert MAX_MINOR < 2**53 < 2**63


def test_numbers_are_taken_at_their_exact_value() -> None:
    assert parse_amount(Decimal("100.500"), "CNY") == Decimal("100.50")
    assert parse_amount(12, "JPY") == Decimal(12)
    with pytest.raises(InvalidInput, match="more than 2 decimal places"):
        parse_amount(Decimal("1E-400"), "CNY")


def test_json_numbers_are_decoded_exactly() -> None:
    doc = json_loads(b'{"a": 0.1, "b": 1234567890123.45, "c": 7, "d": 1e400}')
    assert doc == {"a": Decimal("0.1"), "b": Decimal("1234567890123.45"), "c": 7, "d": Decimal("1e400")}
    assert not any(isinstance(v, float) for v in doc.values())
    assert parse_amount(doc["b"], "CNY") == Decimal("1234567890123.45")
    with pytest.raises(InvalidInput, match="above the limit"):
        parse_amount(doc["d"], "CNY")
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueError, match="is not a number"):
            json_loads(b'{"a": ' + constant + b"}")


_REFERENCE = {0: re.compile(r"-?[0-9]+", re.ASCII), 2: re.compile(r"-?[0-9]+(\.[0-9]{1,2})?", re.ASCII),
              3: re.compile(r"-?[0-9]+(\.[0-9]{1,3})?", re.ASCII)}
_CURRENCIES = {0: "JPY", 2: "CNY", 3: "KWD"}


@st.composite
def _grammar_amounts(draw: st.DrawFn) -> tuple[str, str]:
    """Strings inside the grammar, within the limit: sign, up to 13 digits, up to the currency's decimals."""
    exp = draw(st.sampled_from([0, 2, 3]))
    whole = draw(st.integers(min_value=0, max_value=MAX_MINOR // 10**exp))
    lead = draw(st.sampled_from(["", "", "0", "00"]))
    text = f"{lead}{whole}"
    if exp and draw(st.booleans()):
        places = draw(st.integers(min_value=1, max_value=exp))
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=places, max_size=places)))
    if draw(st.booleans()):
        text = "-" + text
    return text, _CURRENCIES[exp]


@given(_grammar_amounts())
def test_accepted_strings_round_trip_exactly(case: tuple[str, str]) -> None:
    text, currency = case
    try:
        amount = parse_amount(text, currency, allow_negative=True)
    except InvalidInput as exc:
        assert Decimal(text) == 0 and "must not be zero" in exc.message
        return
    assert amount == Decimal(text)  # the value read is exactly the value written
    minor = to_minor(amount, currency)
    assert Decimal(fmt(minor, currency)) == Decimal(text)
    assert parse_amount(fmt(minor, currency), currency, allow_negative=True) == amount  # and back again


_NEAR = st.sampled_from(list("0123456789.-+,_eE ") + ["\u00a0", "\uff11", "\u0663", "\u09e7", "\u00b9", "\t",
                                                    "\x00", "\x1b", "\u2212", "\u066b", "'", "\u3000"])


@given(st.one_of(st.text(max_size=20), st.lists(_NEAR, max_size=20).map("".join)), st.sampled_from([0, 2, 3]))
def test_everything_outside_the_grammar_is_refused(text: str, exp: int) -> None:
    currency = _CURRENCIES[exp]
    inside = _REFERENCE[exp].fullmatch(text) is not None
    try:
        amount = parse_amount(text, currency, allow_negative=True)
    except InvalidInput as exc:
        assert not inside or Decimal(text) == 0 or abs(Decimal(text)).scaleb(exp) > MAX_MINOR, exc.message
        assert exc.message.startswith(f"amount: {text!r}"[:60])
        return
    assert inside, f"{text!r} was accepted as {amount}"
    assert amount == Decimal(text)


@given(_grammar_amounts(), st.data())
def test_one_foreign_character_anywhere_is_refused(case: tuple[str, str], data: st.DataObject) -> None:
    text, currency = case
    bad = data.draw(st.sampled_from([",", "_", "e", " ", "+", "\uff10", "\u0660", "\u00a0", "\x1b",
                                     "\u2212"]))
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    mutated = text[:at] + bad + text[at:]
    with pytest.raises(InvalidInput, match="is not an amount"):
        parse_amount(mutated, currency, allow_negative=True)


@pytest.mark.parametrize(("value", "why"), [
    ('"1,000"', "',' is not accepted"), ('"1_000"', "'_' is not accepted"), ('" 100"', "spaces around it"),
    ("1000.5", "floats are not exact"), ('"1e4"', "exponents"),
])
def test_compliance_thresholds_in_the_config_use_the_grammar(tmp_path: Path, value: str, why: str) -> None:
    from connector.compliance.rules import load_rules
    from connector.errors import ConfigError

    path = tmp_path / "prepaid-sync.toml"
    path.write_text(f"[compliance]\nreal_name_threshold = {{CNY = {value}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert "real_name_threshold" in str(caught.value) and why in str(caught.value)
