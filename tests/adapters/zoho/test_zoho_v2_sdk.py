"""Zoho's official Python SDK for CRM API v2 (`zcrmsdk`), unchanged, against the sandbox's `/crm/v2`.

Done-when of issue 13: a v2 client reads Accounts past 2,000 records. The SDK pages the way the v2
documentation describes (page and per_page, no `fields`), and must get every account.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# zcrmsdk is a declared test dependency: if it is missing this module fails, it is never skipped.
from zcrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken, TokenType
from zcrmsdk.src.com.zoho.api.authenticator.store import FileStore
from zcrmsdk.src.com.zoho.api.logger import Logger
from zcrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zcrmsdk.src.com.zoho.crm.api.header_map import HeaderMap
from zcrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zcrmsdk.src.com.zoho.crm.api.parameter_map import ParameterMap
from zcrmsdk.src.com.zoho.crm.api.record import GetRecordsParam, RecordOperations, ResponseWrapper
from zcrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zcrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from connector.adapters.zoho.sandbox import ZohoSandbox

ACCOUNTS = 2150


@pytest.fixture(scope="module")
def v2_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZohoSandbox]:
    """A sandbox of 2,150 accounts with the v2 SDK initialised against it."""
    tmp: Path = tmp_path_factory.mktemp("zoho-v2-sdk")
    with ZohoSandbox(seed=ACCOUNTS, related=False) as sb:
        env = DataCenter.Environment(sb.api_domain, sb.accounts_url + "/oauth/v2/token", sb.api_domain)
        token = OAuthToken(client_id=sb.config.client_id, client_secret=sb.config.client_secret,
                           token=sb.config.refresh_token, token_type=TokenType.REFRESH)
        Initializer.initialize(user=UserSignature(sb.org.current_user["email"]), environment=env, token=token,
                               store=FileStore(str(tmp / "tokens.txt")),
                               sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=False),
                               resource_path=str(tmp),
                               logger=Logger.get_instance(Logger.Levels.INFO, str(tmp / "sdk.log")))
        yield sb


def test_v2_sdk_reads_every_account_past_2000_by_page_number(v2_sandbox: ZohoSandbox) -> None:
    seen: list[str] = []
    page = 1
    while True:
        params = ParameterMap()
        params.add(GetRecordsParam.page, page)
        params.add(GetRecordsParam.per_page, 200)
        response = RecordOperations().get_records("Accounts", params, HeaderMap())
        assert response is not None and response.get_status_code() == 200, page
        wrapper = response.get_object()
        assert isinstance(wrapper, ResponseWrapper)
        seen.extend(str(r.get_id()) for r in wrapper.get_data())
        if not wrapper.get_info().get_more_records():
            break
        page += 1
    assert page == 11
    assert len(seen) == len(set(seen)) == ACCOUNTS
    assert set(seen) == set(v2_sandbox.org.modules["Accounts"].records)
    assert v2_sandbox.app.stats["token_calls"] == 1


def test_v2_sdk_sees_account_fields_without_asking_for_them(v2_sandbox: ZohoSandbox) -> None:
    params = ParameterMap()
    params.add(GetRecordsParam.per_page, 3)
    response = RecordOperations().get_records("Accounts", params, HeaderMap())
    [first, *_] = response.get_object().get_data()
    assert first.get_key_value("Account_Name")
    assert first.get_key_value("Ledger_Customer_ID")
