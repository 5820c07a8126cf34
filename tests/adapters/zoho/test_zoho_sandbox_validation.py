"""Writes the real Zoho refuses are refused by the sandbox too (formats, picklists, lengths, limits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.adapters.zoho.sandbox.schema import field as make_field


@pytest.fixture(scope="module")
def sb() -> Iterator[ZohoSandbox]:
    with ZohoSandbox(seed=5) as sandbox:
        accounts = sandbox.org.modules["Accounts"]
        accounts.add_field(
            make_field("Regions", "multiselectpicklist", custom=True, picklist=["EMEA", "APAC"],
                       field_id="4876876000000999001"))
        yield sandbox


@pytest.fixture(scope="module")
def write(sb: ZohoSandbox) -> Any:
    token = requests.post(
        sb.accounts_url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token
        }, timeout=10).json()["access_token"]

    def post(module: str, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = requests.post(f"{sb.api_domain}/crm/v8/{module}", json={"data": [row], "trigger": []},
                             timeout=10, headers={"Authorization": f"Zoho-oauthtoken {token}"})
        return resp.status_code, resp.json()["data"][0]

    return post


@pytest.mark.parametrize("value", ["2026-01-05"])
def test_documented_date_is_taken(write: Any, value: str) -> None:
    status, item = write("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Closing_Date": value})
    assert status == 201, item


@pytest.mark.parametrize("value",
                         ["20260105", "2026-W01-1", "2026-1-5", "05/01/2026", "2026-01-05T00:00:00+05:30"])
def test_other_date_spellings_are_refused(write: Any, value: str) -> None:
    status, item = write("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Closing_Date": value})
    assert status == 400 and item["code"] == "INVALID_DATA" and item["details"]["api_name"] == "Closing_Date"


@pytest.mark.parametrize("value",
                         ["2026-01-05T10:15:00+05:30", "2026-01-05T04:45:00-11:00", "2026-01-05T04:45:00Z"])
def test_documented_datetime_is_taken(write: Any, value: str) -> None:
    status, item = write("Accounts", {"Account_Name": "T", "Prepaid_Synced_At": value})
    assert status == 201, item


@pytest.mark.parametrize("value", ["2026-01-05 10:15:00+05:30", "2026-01-05T10:15:00.123+05:30",
                                   "2026-01-05T10:15:00", "20260105T101500+0530", "2026-01-05T10:15+05:30"])
def test_other_datetime_spellings_are_refused(write: Any, value: str) -> None:
    status, item = write("Accounts", {"Account_Name": "T", "Prepaid_Synced_At": value})
    assert status == 400 and item["code"] == "INVALID_DATA" and item["details"][
        "api_name"] == "Prepaid_Synced_At"


def test_multiselect_values_must_be_in_the_picklist(write: Any) -> None:
    assert write("Accounts", {"Account_Name": "M1", "Regions": ["EMEA", "APAC"]})[0] == 201
    status, item = write("Accounts", {"Account_Name": "M2", "Regions": ["EMEA", "Mars"]})
    assert status == 400 and item["details"]["api_name"] == "Regions"


def test_picklist_length_and_required_fields_are_checked(write: Any) -> None:
    assert write("Accounts", {"Account_Name": "P", "Prepaid_Tier": "Diamond"})[1]["code"] == "INVALID_DATA"
    long_name = write("Accounts", {"Account_Name": "x" * 201})[1]
    assert long_name["code"] == "INVALID_DATA" and long_name["details"]["maximum_length"] == 200
    assert write("Accounts", {"Phone": "1"})[1]["code"] == "MANDATORY_NOT_FOUND"


def test_more_than_100_records_in_one_write_is_refused(sb: ZohoSandbox, write: Any) -> None:
    token = requests.post(
        sb.accounts_url + "/oauth/v2/token", params={
            "grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token
        }, timeout=10).json()["access_token"]
    resp = requests.post(f"{sb.api_domain}/crm/v8/Accounts", timeout=10,
                         json={"data": [{"Account_Name": f"A{i}"} for i in range(101)]},
                         headers={"Authorization": f"Zoho-oauthtoken {token}"})
    assert resp.status_code == 400 and resp.json()["code"] == "LIMIT_EXCEEDED"
