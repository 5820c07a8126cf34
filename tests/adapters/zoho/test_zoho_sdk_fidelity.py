"""Zoho's official Python SDK (zohocrmsdk8-0) against the loopback sandbox, as on real Zoho."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

# zohocrmsdk8-0 is a declared test dependency: if it is missing this module fails, it is never skipped.
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken  # noqa: E402
from zohocrmsdk.src.com.zoho.api.authenticator.store import FileStore  # noqa: E402
from zohocrmsdk.src.com.zoho.api.logger import Logger  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.fields import FieldsOperations, GetFieldsParam  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.fields import ResponseWrapper as FieldsWrapper  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.header_map import HeaderMap  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.parameter_map import ParameterMap  # noqa: E402
from zohocrmsdk.src.com.zoho.crm.api.record import (  # noqa: E402
    ActionWrapper,
    BodyWrapper,
    GetRecordsParam,
    Record,
    RecordOperations,
    ResponseWrapper,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig  # noqa: E402

from connector.adapters.zoho.sandbox import ZohoSandbox


@pytest.fixture(scope="module")
def sdk_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZohoSandbox]:
    """A sandbox with the SDK initialised against it (token file and field cache in a tmp dir)."""
    tmp: Path = tmp_path_factory.mktemp("zoho-sdk")
    with ZohoSandbox(seed=40) as sb:
        env = DataCenter.Environment(sb.api_domain, sb.accounts_url + "/oauth/v2/token", sb.api_domain)
        token = OAuthToken(client_id=sb.config.client_id, client_secret=sb.config.client_secret,
                           refresh_token=sb.config.refresh_token)
        Initializer.initialize(environment=env, token=token, store=FileStore(str(tmp / "tokens.txt")),
                               sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=True),
                               resource_path=str(tmp),
                               logger=Logger.get_instance(Logger.Levels.INFO, str(tmp / "sdk.log")))
        yield sb


def test_sdk_authenticated_through_token_endpoint(sdk_sandbox: ZohoSandbox) -> None:
    assert sdk_sandbox.app.stats["token_calls"] == 1


def test_sdk_reads_field_metadata(sdk_sandbox: ZohoSandbox) -> None:
    params = ParameterMap()
    params.add(GetFieldsParam.module, "Accounts")
    response = FieldsOperations().get_fields(params)
    wrapper = response.get_object()
    assert response.get_status_code() == 200 and isinstance(wrapper, FieldsWrapper)
    by_name = {f.get_api_name(): f for f in wrapper.get_fields()}
    assert by_name["Prepaid_Balance"].get_data_type() == "currency"
    assert by_name["Account_Name"].get_system_mandatory() is True
    assert "Gold" in [p.get_actual_value() for p in by_name["Prepaid_Tier"].get_pick_list_values()]


def test_sdk_lists_accounts_with_fields_and_page_token(sdk_sandbox: ZohoSandbox) -> None:
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Account_Name,Currency,Owner")
    params.add(GetRecordsParam.per_page, 15)
    response = RecordOperations("Accounts").get_records(params, HeaderMap())
    wrapper = response.get_object()
    assert response.get_status_code() == 200 and isinstance(wrapper, ResponseWrapper)
    records = wrapper.get_data()
    assert len(records) == 15
    ids = [int(r.get_id()) for r in records]
    assert ids == sorted(ids, reverse=True)  # Zoho's default order: id descending
    assert records[0].get_key_value("Account_Name").endswith("40")
    assert wrapper.get_info().get_more_records() is True and wrapper.get_info().get_next_page_token()
    token = wrapper.get_info().get_next_page_token()
    params.add(GetRecordsParam.page_token, token)
    second = RecordOperations("Accounts").get_records(params, HeaderMap()).get_object().get_data()
    assert not {r.get_id() for r in second} & {r.get_id() for r in records}


def test_sdk_upserts_accounts(sdk_sandbox: ZohoSandbox) -> None:
    existing = next(iter(sdk_sandbox.org.modules["Accounts"].records.values()))
    update, insert = Record(), Record()
    update.add_key_value("Account_Name", existing["Account_Name"])
    update.add_key_value("Ledger_Customer_ID", existing["Ledger_Customer_ID"])
    update.add_key_value("Prepaid_Balance", 1250.5)
    insert.add_key_value("Account_Name", "SDK Upsert Co")
    insert.add_key_value("Ledger_Customer_ID", "C-SDK-1")
    body = BodyWrapper()
    body.set_data([update, insert])
    body.set_duplicate_check_fields(["Ledger_Customer_ID"])
    body.set_trigger([])
    response = RecordOperations("Accounts").upsert_records(body, HeaderMap())
    wrapper = response.get_object()
    assert response.get_status_code() == 200 and isinstance(wrapper, ActionWrapper)
    results = wrapper.get_data()
    assert all(isinstance(r, SuccessResponse) for r in results)
    assert [r.get_details()["id"] == existing["id"] for r in results] == [True, False]
    assert [r.get_message().get_value() for r in results] == ["record updated", "record added"]
    assert sdk_sandbox.org.modules["Accounts"].records[existing["id"]]["Prepaid_Balance"] == Decimal(
        "1250.50")


def test_sdk_creates_task_linked_to_account(sdk_sandbox: ZohoSandbox) -> None:
    account_id = next(iter(sdk_sandbox.org.modules["Accounts"].records))
    related = Record()
    related.set_id(int(account_id))
    task = Record()
    task.add_key_value("Subject", "Prepaid balance low")
    task.add_key_value("What_Id", related)
    task.add_key_value("$se_module", "Accounts")
    task.add_key_value("Prepaid_Sync_Marker", "ps:low:zoho:Accounts:" + account_id)
    body = BodyWrapper()
    body.set_data([task])
    response = RecordOperations("Tasks").create_records(body, HeaderMap())
    wrapper = response.get_object()
    assert response.get_status_code() == 201 and isinstance(wrapper, ActionWrapper)
    [result] = wrapper.get_data()
    assert isinstance(result, SuccessResponse) and result.get_code().get_value() == "SUCCESS"
    stored = sdk_sandbox.org.modules["Tasks"].records[str(result.get_details()["id"])]
    assert stored["What_Id"]["id"] == account_id and stored["$se_module"] == "Accounts"
