"""Money in Zoho payloads: JSON numbers read exactly (never a float), text amounts held to the one grammar."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import responses
from zoho_helpers import API, TOKEN_URL, token_body

from connector.adapters.zoho import ZohoAdapter, default_specs
from connector.adapters.zoho.client import ZohoClient
from connector.domain import Entity, Payment

PAYMENTS_URL = f"{API}/crm/v8/Prepaid_Payments"


def _body(amount_json: str) -> str:
    """A records page whose one payment carries `amount_json` as its raw JSON value."""
    return (
        '{"data": [{"id": "9001", "Account": {"id": "7001"}, "Deal": null, "Amount": ' + amount_json + ', '
        '"Currency": "CNY", "Payment_Date": "2026-01-05", "Payment_Status": "Received", '
        '"Payment_Method": "Wire", '
        '"Owner": {"id": "1", "name": "A"}, "Modified_Time": "2026-01-05T10:00:00+08:00"}], '
        '"info": {"more_records": false, "per_page": 200, "count": 1}}')


@pytest.fixture
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=token_body())
        yield mock


def _pull(make_client: Callable[..., ZohoClient], mocked: Any,
          amount_json: str) -> tuple[list[Any], ZohoAdapter]:
    mocked.get(PAYMENTS_URL, body=_body(amount_json), content_type="application/json")
    adapter = ZohoAdapter(make_client())
    return list(adapter.stream(default_specs()[Entity.PAYMENT])), adapter


@pytest.mark.parametrize(("amount_json", "expected"), [
    ("1250.10", Decimal("1250.10")),
    ("0.1", Decimal("0.10")),
    ("9999999999999.99", Decimal("9999999999999.99")),
    ("1234567890123.45", Decimal("1234567890123.45")),
    ("12", Decimal("12.00")),
    ("1.5e2", Decimal("150.00")),
    ('"250.00"', Decimal("250.00")),
])
def test_json_amounts_are_read_exactly(make_client: Callable[..., ZohoClient], mocked: Any, amount_json: str,
                                       expected: Decimal) -> None:
    records, adapter = _pull(make_client, mocked, amount_json)
    assert adapter.rejected == []
    assert isinstance(records[0], Payment) and records[0].amount == expected
    assert str(records[0].amount) == str(expected)


@pytest.mark.parametrize(("amount_json", "why"), [
    ("1e400", "above the limit of 9999999999999.99 CNY"), ("-1e400", "above the limit"),
    ("99999999999999999999999.99", "above the limit"), ("12.345", "more than 2 decimal places"),
    ('"1,000.00"', "',' is not accepted"), ('"100,00"', "',' is not accepted"), ('"1e5"', "exponents"),
    ('"\uff11\uff10\uff10"', "non-ASCII"), ('" 100"', "spaces"),
])
def test_bad_amounts_reject_the_record_not_the_run(make_client: Callable[..., ZohoClient], mocked: Any,
                                                   amount_json: str, why: str) -> None:
    records, adapter = _pull(make_client, mocked, amount_json)
    assert records == []
    assert [(b.record, b.field) for b in adapter.rejected] == [("zoho:Prepaid_Payments:9001", "Amount")]
    assert why in adapter.rejected[0].reason


def test_json_constants_are_not_numbers(make_client: Callable[..., ZohoClient], mocked: Any) -> None:
    mocked.get(PAYMENTS_URL, body=_body("NaN"), content_type="application/json")
    client = make_client()
    decoded = client._decode(client.session.get(PAYMENTS_URL))  # what the client makes of such a body
    assert "NaN" in str(decoded) and not any(isinstance(v, float) for v in _leaves(decoded))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]
