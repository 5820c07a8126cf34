"""The sandbox over real loopback HTTP: Zoho's paths, codes, shapes and limits."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from zoho_helpers import FakeClock

from connector.adapters.zoho.sandbox import ZohoSandbox


class Api:
    """A bare HTTP helper holding one sandbox token."""

    def __init__(self, sb: ZohoSandbox) -> None:
        self.sb = sb
        resp = requests.post(sb.accounts_url + "/oauth/v2/token", params={
            "grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token})
        self.token = resp.json()["access_token"]

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Zoho-oauthtoken {self.token}", **kw.pop("headers", {})}
        return requests.request(method, f"{self.sb.api_domain}/crm/v8{path}", headers=headers, timeout=10,
                                **kw)


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[ZohoSandbox]:
    with ZohoSandbox(seed=30, clock=clock.seconds) as sandbox:
        yield sandbox


@pytest.fixture
def api(sb: ZohoSandbox) -> Api:
    return Api(sb)


def test_token_endpoint_errors(sb: ZohoSandbox) -> None:
    url = sb.accounts_url + "/oauth/v2/token"
    bad = requests.post(url, data={"grant_type": "refresh_token", "client_id": sb.config.client_id,
                                   "client_secret": sb.config.client_secret, "refresh_token": "nope"})
    assert bad.status_code == 200 and bad.json() == {"error": "invalid_code"}
    good = requests.post(
        url, data={
            "grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token
        })
    assert set(good.json()) >= {"access_token", "api_domain", "expires_in", "token_type"}
    assert good.json()["api_domain"] == sb.api_domain
    for _ in range(9):
        requests.post(
            url, data={
                "grant_type": "refresh_token", "client_id": sb.config.client_id,
                "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token
            })
    throttled = requests.post(url, data={"grant_type": "refresh_token", "client_id": sb.config.client_id,
                                         "client_secret": sb.config.client_secret,
                                         "refresh_token": sb.config.refresh_token})
    assert throttled.json()["error"] == "Access Denied"


def test_auth_failures(sb: ZohoSandbox, api: Api, clock: FakeClock) -> None:
    assert requests.get(sb.api_domain + "/crm/v8/users").json()["code"] == "AUTHENTICATION_FAILURE"
    assert api("GET", "/users", params={"type": "CurrentUser"}).status_code == 200
    clock.advance(3601)
    expired = api("GET", "/users", params={"type": "CurrentUser"})
    assert expired.status_code == 401 and expired.json() == {
        "code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"
    }


@pytest.mark.parametrize("params,code", [
    ({}, "REQUIRED_PARAM_MISSING"),
    ({"fields": ",".join(f"F{i}" for i in range(51))}, "LIMIT_EXCEEDED"),
    ({"fields": "Account_Name", "per_page": 201}, "INVALID_DATA"),
    ({"fields": "Account_Name", "page": 11}, "DISCRETE_PAGINATION_LIMIT_EXCEEDED"),
    ({"fields": "Account_Name", "page": 2, "page_token": "x"}, "AMBIGUITY_DURING_PROCESSING"),
    ({"fields": "Account_Name", "sort_by": "Account_Name"}, "INVALID_DATA"),
])
def test_list_errors(api: Api, params: dict[str, Any], code: str) -> None:
    resp = api("GET", "/Accounts", params=params)
    assert resp.status_code == 400 and resp.json()["code"] == code and resp.json()["status"] == "error"


def test_list_shape_tokens_binding_and_expiry(api: Api, clock: FakeClock) -> None:
    params = {
        "fields": "Account_Name,Modified_Time", "per_page": 10, "sort_by": "Modified_Time",
        "sort_order": "asc"
    }
    first = api("GET", "/Accounts", params=params)
    body = first.json()
    assert first.headers["Content-Type"].startswith("application/json")
    info = body["info"]
    assert info["count"] == 10 and info["more_records"] and info["next_page_token"] and info[
        "page_token_expiry"]
    assert set(body["data"][0]) >= {"id", "Account_Name", "Modified_Time"}
    assert body["data"][0]["Modified_Time"].endswith("+05:30")  # the org's offset, whole seconds
    token = info["next_page_token"]
    second = api("GET", "/Accounts", params={**params, "page_token": token}).json()
    assert not {r["id"] for r in second["data"]} & {r["id"] for r in body["data"]}
    mismatch = api("GET", "/Accounts", params={**params, "per_page": 5, "page_token": token})
    assert mismatch.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    clock.advance(86401)
    api.__init__(api.sb)  # a fresh access token after a day
    assert api("GET", "/Accounts", params={**params, "page_token": token}).json()["code"] == "EXPIRED_VALUE"


def test_token_chain_cap(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.adapters.zoho.sandbox.handlers.TOKEN_LIMIT", 20)
    params = {"fields": "Account_Name", "per_page": 10}
    token = api("GET", "/Accounts", params=params).json()["info"]["next_page_token"]
    token = api("GET", "/Accounts", params={**params, "page_token": token}).json()["info"]["next_page_token"]
    capped = api("GET", "/Accounts", params={**params, "page_token": token})
    assert capped.json()["code"] == "PAGINATION_LIMIT_EXCEEDED"


def test_204_and_304(api: Api) -> None:
    assert api("GET", "/Tasks", params={"fields": "Subject"}).status_code == 204
    later = api("GET", "/Accounts", params={"fields": "Account_Name"},
                headers={"If-Modified-Since": "2030-01-01T00:00:00+00:00"})
    assert later.status_code == 304 and later.content == b""


def test_writes_207_400_201_and_validation(api: Api, sb: ZohoSandbox) -> None:
    acc_id = next(iter(sb.org.modules["Accounts"].records))
    resp = api("PUT", "/Accounts", json={"data": [
        {"id": acc_id, "Prepaid_Balance": 10.5, "Prepaid_Tier": "Gold"},
        {"id": acc_id, "Prepaid_Tier": "Diamond"},
        {"id": acc_id, "Prepaid_Balance": "abc"},
        {"id": "1234", "Prepaid_Tier": "Gold"},
        {"id": acc_id, "Account_Name": ""}], "trigger": []})
    items = resp.json()["data"]
    assert resp.status_code == 207
    assert [i["code"] for i in items] == ["SUCCESS", "INVALID_DATA", "INVALID_DATA", "INVALID_DATA",
                                          "MANDATORY_NOT_FOUND"]
    assert items[1]["details"]["api_name"] == "Prepaid_Tier" and items[2]["details"]["json_path"] == \
        "$.data[2].Prepaid_Balance"
    assert items[0]["details"]["Modified_Time"].endswith("+05:30")
    all_bad = api("POST", "/Tasks", json={"data": [{"Description": "no subject"}]})
    assert all_bad.status_code == 400 and all_bad.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"
    no_se = api("POST", "/Tasks", json={"data": [{"Subject": "x", "What_Id": {"id": acc_id}}]})
    assert no_se.json()["data"][0]["details"]["api_name"] == "$se_module"
    ok = api("POST", "/Tasks",
             json={"data": [{"Subject": "x", "What_Id": {"id": acc_id}, "$se_module": "Accounts"}]})
    assert ok.status_code == 201 and ok.json()["data"][0]["message"] == "record added"
    too_many = api("PUT", "/Accounts", json={"data": [{"id": acc_id}] * 101})
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"
    assert sb.org.modules["Accounts"].records[acc_id]["Prepaid_Balance"] == Decimal("10.50")


def test_trigger_default_runs_automation(api: Api, sb: ZohoSandbox) -> None:
    acc_id = next(iter(sb.org.modules["Accounts"].records))
    api("PUT", "/Accounts", json={"data": [{"id": acc_id, "Prepaid_Tier": "Gold"}], "trigger": []})
    assert sb.app.records.automation_runs == 0
    api("PUT", "/Accounts", json={"data": [{"id": acc_id, "Prepaid_Tier": "Gold"}]})
    assert sb.app.records.automation_runs == 1


def test_upsert_duplicate_checks_and_tasks_not_upsertable(api: Api, sb: ZohoSandbox) -> None:
    rec = next(iter(sb.org.modules["Accounts"].records.values()))
    resp = api("POST", "/Accounts/upsert", json={"data": [
        {"Account_Name": "Renamed", "Ledger_Customer_ID": rec["Ledger_Customer_ID"]},
        {"Account_Name": "Brand New", "Ledger_Customer_ID": "C-NEW"}],
        "duplicate_check_fields": ["Ledger_Customer_ID"], "trigger": []}).json()["data"]
    assert [(r["action"], r["duplicate_field"]) for r in resp] == [("update", "Ledger_Customer_ID"),
                                                                   ("insert", None)]
    dup = api("POST", "/Accounts", json={"data": [{"Account_Name": "X",
                                                   "Ledger_Customer_ID": "C-NEW"}]}).json()
    assert dup["data"][0]["code"] == "DUPLICATE_DATA"
    assert api("POST", "/Tasks/upsert", json={"data": [{"Subject": "x"}]}).json()["code"] == "NOT_SUPPORTED"


def test_deleted_search_and_coql(api: Api, sb: ZohoSandbox, clock: FakeClock) -> None:
    acc_id = next(iter(sb.org.modules["Accounts"].records))
    assert api("DELETE", "/Accounts", params={"ids": acc_id}).json()["data"][0]["message"] == "record deleted"
    deleted = api("GET", "/Accounts/deleted", params={"type": "recycle"}).json()["data"]
    assert acc_id in [d["id"]
                      for d in deleted] and {"deleted_by", "deleted_time", "display_name"} <= set(deleted[0])
    assert api("GET", "/Accounts/deleted", params={"type": "bogus"}).json()["code"] == "PATTERN_NOT_MATCHED"
    name = next(iter(sb.org.modules["Accounts"].records.values()))["Account_Name"]
    word = name.split()[0]
    hits = api("GET", "/Accounts/search", params={"criteria": f"(Account_Name:equals:{word})"}).json()["data"]
    assert all(word.lower() in h["Account_Name"].lower() for h in hits) and len(hits) > 1  # equals ~ contains
    made = api("POST", "/Accounts", json={"data": [{"Account_Name": "Fresh Zq"}]})
    assert made.status_code == 201
    assert api("GET", "/Accounts/search",
               params={"criteria": "(Account_Name:equals:Fresh Zq)"}).status_code == 204
    clock.advance(5)  # the search index catches up
    assert api("GET", "/Accounts/search",
               params={"criteria": "(Account_Name:equals:Fresh Zq)"}).status_code == 200
    coql = api("POST", "/coql",
               json={"select_query": "select Account_Name from Accounts where Account_Name = 'Fresh Zq'"})
    assert coql.json()["data"][0]["Account_Name"] == "Fresh Zq" and coql.json(
    )["info"]["more_records"] is False
    missing_where = api("POST", "/coql", json={"select_query": "select Account_Name from Accounts"})
    assert missing_where.json()["code"] == "SYNTAX_ERROR"
    big = api("POST", "/coql",
              json={"select_query": "select id from Accounts where id is not null limit 2001"})
    assert big.json()["code"] == "LIMIT_EXCEEDED"


def test_credits_and_concurrency_limits() -> None:
    with ZohoSandbox(seed=5, daily_credits=4) as sb:
        api = Api(sb)
        codes = [api("GET", "/Accounts", params={"fields": "Account_Name"}) for _ in range(5)]
        assert [c.status_code for c in codes] == [200, 200, 200, 200, 429]
        assert codes[2].headers["X-API-CREDITS-REMAINING"] == "1"
        assert codes[4].json(
        )["code"] == "TOO_MANY_REQUESTS" and codes[4].headers["X-API-CREDITS-REMAINING"] == "0"
    with ZohoSandbox(seed=5, concurrency=1, latency_ms=150) as sb:
        api = Api(sb)
        import threading
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            api("GET", "/Accounts", params={"fields": "Account_Name"}).status_code)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results)[0] == 200 and 429 in results


def test_field_metadata_and_custom_field(api: Api) -> None:
    fields = api("GET", "/settings/fields", params={"module": "Deals"}).json()["fields"]
    meta = {f["api_name"]: f for f in fields}
    assert meta["Prepay_Amount"]["data_type"] == "currency" and meta["Prepay_Amount"]["json_type"] == "double"
    assert meta["Stage"]["system_mandatory"] and meta["Stage"]["pick_list_values"][0][
        "actual_value"] == "-None-"
    made = api("POST", "/settings/fields", params={"module": "Accounts"},
               json={"fields": [{"field_label": "Prepaid Risk", "data_type": "text", "length": 50}]})
    assert made.status_code == 201 and made.json()["fields"][0]["message"] == "field created"
    names = [
        f["api_name"] for f in api("GET", "/settings/fields", params={"module": "Accounts"}).json()["fields"]
    ]
    assert "Prepaid_Risk" in names
    assert api("GET", "/settings/fields", params={"module": "Nope"}).json()["code"] == "INVALID_MODULE"
    assert api("GET", "/Nope", params={"fields": "x"}).json()["code"] == "INVALID_MODULE"
    assert api("GET", "/settings/whatever").status_code == 404


def test_seed_is_deterministic() -> None:
    a, b = ZohoSandbox(seed=80), ZohoSandbox(seed=80)
    rows_a = [(r["Account_Name"], r["Currency"], r["Owner"]["id"])
              for r in a.org.modules["Accounts"].records.values()]
    rows_b = [(r["Account_Name"], r["Currency"], r["Owner"]["id"])
              for r in b.org.modules["Accounts"].records.values()]
    assert rows_a == rows_b and a.summary["anomalies"] and a.summary["deleted"] == 1
    assert len({r[2] for r in rows_a}) > 2 and len({r[1] for r in rows_a}) > 3
