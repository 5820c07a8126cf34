"""The adapter works each spec's mapping out once; records map the same whichever spec came first."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from connector.adapters.base import EntitySpec
from connector.adapters.zoho import ZohoAdapter, default_specs
from connector.adapters.zoho.wire import parse_time
from connector.domain import Contract, Customer, Entity
from connector.errors import RecordRejected



def _account(**extra: Any) -> dict[str, Any]:
    return {"id": "11", "Account_Name": "Acme", "Currency": "usd", "Ledger_Customer_ID": None,
            "Prepaid_Balance": None, "Prepaid_Tier": None, "Prepaid_Flags": None,
            "Owner": {"id": "7", "name": "Ann"}, "Modified_Time": "2026-01-05T10:15:07+05:30", **extra}


def test_two_specs_on_one_adapter_each_keep_their_mapping() -> None:
    adapter = ZohoAdapter.__new__(ZohoAdapter)
    ZohoAdapter.__init__(adapter, client=None)  # type: ignore[arg-type]
    specs = default_specs()
    other = EntitySpec(entity=Entity.CUSTOMER, module="Accounts", fields={"name": "Other_Name"})
    first = adapter.to_domain(specs[Entity.CUSTOMER], _account())
    second = adapter.to_domain(other, {"id": "12", "Other_Name": "Beta",
                                       "Modified_Time": "2026-01-05T10:15:07Z"})
    again = adapter.to_domain(specs[Entity.CUSTOMER], _account(id="13"))
    assert isinstance(first, Customer) and first.name == "Acme" and first.currency == "USD"
    assert isinstance(second, Customer) and second.name == "Beta" and second.currency is None
    assert again.crm_id == "13" and again.owner_name == "Ann"
    assert first.modified_at == datetime(2026, 1, 5, 4, 45, 7, tzinfo=timezone.utc)


def test_absent_fields_and_missing_required_values_are_still_named() -> None:
    adapter = ZohoAdapter.__new__(ZohoAdapter)
    ZohoAdapter.__init__(adapter, client=None)  # type: ignore[arg-type]
    spec = default_specs()[Entity.CUSTOMER]
    row = _account()
    del row["Prepaid_Tier"], row["Currency"]
    with pytest.raises(RecordRejected) as absent:
        adapter.to_domain(spec, row)
    assert absent.value.incomplete and "Currency, Prepaid_Tier" in str(absent.value)
    with pytest.raises(RecordRejected, match="required value is missing"):
        adapter.to_domain(spec, _account(Account_Name=""))


def test_contract_amount_without_currency_is_refused_and_with_one_is_exact() -> None:
    adapter = ZohoAdapter.__new__(ZohoAdapter)
    ZohoAdapter.__init__(adapter, client=None)  # type: ignore[arg-type]
    spec = default_specs()[Entity.CONTRACT]
    row = {name: None for name in spec.crm_fields()} | {
        "id": "5", "Account_Name": {"id": "11"}, "Prepay_Amount": Decimal("1000.10"),
        "Modified_Time": "2026-01-05T10:15:07Z"}
    with pytest.raises(RecordRejected, match="amount without a currency"):
        adapter.to_domain(spec, row)
    contract = adapter.to_domain(spec, row | {"Currency": "CNY"})
    assert isinstance(contract, Contract) and contract.prepay_amount == Decimal("1000.10")
    assert contract.customer_id == "11"


def test_parse_time_gives_the_same_instant_for_equal_and_repeated_texts() -> None:
    text = "2026-01-05T10:15:07+05:30"
    assert parse_time(text) is parse_time(text)
    assert parse_time("2026-01-05T04:45:07Z") == parse_time(text)
    assert parse_time(" 2026-01-05T04:45:07 ") == datetime(2026, 1, 5, 4, 45, 7, tzinfo=timezone.utc)
