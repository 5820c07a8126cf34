"""`parse_minor`, the bulk import's integer fast path, answers what `to_minor(parse_amount())` does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import InvalidInput
from connector.money import MINOR_UNITS, parse_amount, parse_minor, to_minor

_TEXT = st.one_of(
    st.from_regex(r"-?[0-9]{1,18}(\.[0-9]{0,5})?", fullmatch=True),
    st.text(alphabet="-0123456789.,e+_ \u0663", max_size=22),
)


def _both(value: object, currency: str, **kw: bool) -> tuple[object, object]:
    def run(f: object) -> object:
        try:
            return f()  # type: ignore[operator]
        except InvalidInput as exc:
            return ("refused", exc.message, exc.details.get("field"))
    fast = run(lambda: parse_minor(value, currency, **kw))
    slow = run(lambda: to_minor(parse_amount(value, currency, **kw), currency))
    return fast, slow


@given(_TEXT, st.sampled_from(sorted(MINOR_UNITS) + ["cny", "XYZ"]), st.booleans(), st.booleans())
def test_parse_minor_is_parse_amount_in_minor_units(text: str, currency: str, zero: bool,
                                                    negative: bool) -> None:
    fast, slow = _both(text, currency, allow_zero=zero, allow_negative=negative)
    assert fast == slow


@pytest.mark.parametrize("value", ["-0", "0", "0.00", "9999999999999.99", "10000000000000.00", "00001.5",
                                   "-1.5", "1.", ".5", "1.234", 7, 1.5, True])
@pytest.mark.parametrize("currency", ["CNY", "JPY", "KWD"])
def test_parse_minor_edges(value: object, currency: str) -> None:
    for zero in (False, True):
        for negative in (False, True):
            fast, slow = _both(value, currency, allow_zero=zero, allow_negative=negative)
            assert fast == slow
