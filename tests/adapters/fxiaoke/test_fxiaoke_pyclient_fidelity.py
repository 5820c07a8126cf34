"""Fidelity: the third-party `fxiaoke-python` client, its fixed base URL redirected to the loopback
sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A declared test dependency: missing, it must fail the suite rather than skip the fidelity check.
import fxiaoke.api as fxiaoke_api  # noqa: E402
import requests
from fxiaoke.baseObj import baseObj  # noqa: E402
from requests.adapters import HTTPAdapter

from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox

VENDOR = "https://open.fxiaoke.com"


class Redirect(HTTPAdapter):
    """Send requests for the vendor host to the sandbox instead (the client hard-codes its URLs)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        request.url = (request.url or "").replace(VENDOR, self.target, 1)
        return super().send(request, *args, **kwargs)


def vendor_api(sandbox: FxiaokeSandbox) -> fxiaoke_api.FxiaokeApi:
    """fxiaoke-python initialised with the sandbox's credentials, its vendor host sent to the sandbox."""
    creds = sandbox.app.credentials
    api = fxiaoke_api.FxiaokeApi.init(app_id=creds.app_id, app_secret=creds.app_secret,
                                      permanent_code=creds.permanent_code, open_user_id=creds.open_user_id)
    api._session.requests.mount(VENDOR, Redirect(sandbox.base_url))
    return api


def test_fxiaoke_python_cursor_reads_every_record_of_250_accounts(
        loopback: Callable[..., FxiaokeSandbox]) -> None:
    # Its cursor pages by `total` (next offset while total > offset + limit) and never asks for a count:
    # that works only because `find_explicit_total_num` defaults to true, as the docs say.
    sandbox = loopback(seed=250)
    cursor = baseObj(vendor_api(sandbox), "AccountObj").query(limit=100)
    ids = [r["_id"] for r in cursor]
    assert len(ids) == 250 and cursor.total() == 250
    assert sorted(ids) == sandbox.app.store.tables["AccountObj"].ids


def test_fxiaoke_python_can_token_query_get_and_create(loopback: Callable[..., FxiaokeSandbox]) -> None:
    sandbox = loopback(seed=150)
    creds = sandbox.app.credentials
    api = vendor_api(sandbox)
    accounts = baseObj(api, "AccountObj")

    first_page = list(accounts.query(limit=100))[:100]
    assert all(isinstance(r["owner"], list) and isinstance(r["last_modified_time"], int) for r in first_page)

    later = accounts.query(
        filters=[{"field_name": "_id", "field_values": [first_page[-1]["_id"]], "operator": "GT"}],
        orders=[{"fieldName": "_id", "isAsc": True}])
    assert [r["_id"] for r in later] == sorted(sandbox.app.store.tables["AccountObj"].ids)[100:]

    record = accounts.get(first_page[0]["_id"])
    assert record["_id"] == first_page[0]["_id"] and record["name"] == first_page[0]["name"]

    created = accounts.create(
        {"name": "保真测试客户", "owner": [creds.open_user_id], "prepaid_balance__c": "88.80"})
    assert created["errorCode"] == 0 and created["dataId"]
    stored = sandbox.app.store.get("AccountObj", created["dataId"])
    assert stored["prepaid_balance__c"] == "88.80" and stored["life_status"] == "normal"

    contracts = baseObj(api, "prepay_contract__c")  # custom objects go through /cgi/crm/custom/v2/data/*
    # limit 10: the cursor walks all pages by total
    assert len(list(contracts.query(limit=10))) == len(sandbox.app.store.tables["prepay_contract__c"].ids)

    described = accounts.describe()
    assert described["describe"]["fields"]["prepaid_tier__c"]["type"] == "select_one"


def test_update_checked_directly_since_fxiaoke_python_has_none(
        loopback: Callable[..., FxiaokeSandbox]) -> None:
    sandbox = loopback(seed=5)
    creds = sandbox.app.credentials
    base = sandbox.base_url
    grant = requests.post(f"{base}/cgi/corpAccessToken/get/V2", timeout=5, json={
        "appId": creds.app_id, "appSecret": creds.app_secret, "permanentCode": creds.permanent_code}).json()
    rid = sandbox.app.store.tables["AccountObj"].ids[0]
    body = {
        "corpAccessToken": grant["corpAccessToken"], "corpId": grant["corpId"],
        "currentOpenUserId": creds.open_user_id, "triggerApprovalFlow": False, "triggerWorkFlow": False,
        "data": {
            "object_data": {"dataObjectApiName": "AccountObj", "_id": rid, "prepaid_balance__c": "1234.50"}
        }
    }
    answer = requests.post(f"{base}/cgi/crm/v2/data/update", json=body, timeout=5).json()
    assert answer["errorCode"] == 0 and "data" not in answer
    assert sandbox.app.store.get("AccountObj", rid)["prepaid_balance__c"] == "1234.50"


def test_third_trace_id_required_only_when_asked(loopback: Callable[..., FxiaokeSandbox]) -> None:
    # Default: like the probed gateway, a call without thirdTraceId is served (fxiaoke-python never sends
    # one).
    assert baseObj(vendor_api(loopback(seed=3)), "AccountObj").query(limit=5).get_one() is not None
    strict = loopback(seed=3, require_trace_id=True)
    creds = strict.app.credentials
    grant = {"appId": creds.app_id, "appSecret": creds.app_secret, "permanentCode": creds.permanent_code}
    url = f"{strict.base_url}/cgi/corpAccessToken/get/V2"
    assert requests.post(url, json=grant, timeout=5).json()["errorCode"] == 10006
    assert requests.post(url, params={"thirdTraceId": "not-a-uuid"}, json=grant,
                         timeout=5).json()["errorCode"] == 10006
    trace = "0b6f3d9e-6a4c-4f1e-9d55-2f0c1d7f9a10"
    assert requests.post(url, params={"thirdTraceId": trace}, json=grant, timeout=5).json()["errorCode"] == 0
    again = requests.post(url, params={"thirdTraceId": trace}, json=grant, timeout=5).json()
    assert again["errorCode"] == 10006 and "thirdTraceId" in again["errorMessage"]  # a new one every call
    try:
        baseObj(vendor_api(strict), "AccountObj").query(limit=5)
    except RuntimeError as exc:  # the old SDK's first call (the token) is refused
        assert "thirdTraceId" in str(exc) or "10006" in str(exc)
    else:
        raise AssertionError("fxiaoke-python got through without a thirdTraceId")
