"""Money in mapping files (issue 11.1): quoted text in the one amount grammar, never a guessed YAML number."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS

LOW = 'low_balance_amount: "100.00"'
TIER = 'min: {lifetime_prepaid: "1000"}'


def _with(tmp_path: Path, old: str, new: str) -> Path:
    text = (DEFAULTS / "zoho.yaml").read_text()
    assert old in text
    path = tmp_path / "mapping.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("line", "words"), [
    ('low_balance_amount: "100,00"',
     ["rules.low_balance_amount", "'100,00' is not an amount", "',' is not accepted (no decimal commas"]),
    ('low_balance_amount: "1,000.00"', ["rules.low_balance_amount", "',' is not accepted"]),
    ('low_balance_amount: "1e5"', ["exponents ('e') are not accepted"]),
    ('low_balance_amount: "1_000"', ["'_' is not accepted"]),
    ('low_balance_amount: "１００"', ["non-ASCII character '１'"]),
    ('low_balance_amount: " 100"', ["spaces around it"]),
    ('low_balance_amount: "-5"', ["the amount must be zero or positive, written without a sign"]),
    ('low_balance_amount: "1.0001"', ["more than 3 decimal places"]),
    ("low_balance_amount: 1_000", [
        "1000 was read as a YAML int, not as text",
        'write amounts in quotes so they are read exactly as written, e.g. "100.00"'
    ]),
    ("low_balance_amount: 100.5", ["100.5 was read as a YAML float"]),
    ("low_balance_amount: 1:30", ["90 was read as a YAML int"]),
    ("mismatch_tolerance: 0.01", ["rules.mismatch_tolerance", "was read as a YAML float"]),
])
def test_rule_amounts_use_the_grammar(tmp_path: Path, line: str, words: list[str]) -> None:
    old = LOW if line.startswith("low") else 'mismatch_tolerance: "0.00"'
    with pytest.raises(ConfigError) as caught:
        load_mapping(_with(tmp_path, old, line))
    for word in words:
        assert word in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("tier", "words"),
    [
        ('min: {lifetime_prepaid: "1,000"}',
         ["tiers.levels[1].min", "lifetime_prepaid: '1,000' is not an amount"]),
        ("min: {lifetime_prepaid: 1e3}", ["lifetime_prepaid: '1e3' is not an amount"
                                          ]),  # YAML 1.1 reads 1e3 as text
        ("min: {lifetime_prepaid: 1000}", ["lifetime_prepaid: 1000 was read as a YAML int"]),
        ('min: {balance: "12.5.0"}', ["more than one '.'"]),
    ])
def test_tier_thresholds_use_the_grammar(tmp_path: Path, tier: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mapping(_with(tmp_path, TIER, tier))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_amounts_read_exactly_and_field_metrics_keep_their_numbers(tmp_path: Path) -> None:
    path = _with(tmp_path, TIER, 'min: {lifetime_prepaid: "1000.50", "field:satisfaction": 8}')
    mapping = load_mapping(path)
    assert mapping.tiers.levels[1].min == {"lifetime_prepaid": Decimal("1000.50"), "field:satisfaction": 8}
    assert str(mapping.rules.low_balance_amount) == "100.00"


def test_decimals_follow_the_mapping_currency(tmp_path: Path) -> None:
    text = (DEFAULTS / "zoho.yaml").read_text().replace(LOW, 'low_balance_amount: "100.50"')
    path = tmp_path / "jpy.yaml"
    path.write_text("currency: JPY\n" + text)
    with pytest.raises(ConfigError,
                       match=r"rules.low_balance_amount: 100.50 has more than 0 decimal places for JPY"):
        load_mapping(path)
