"""Client behaviour against canned vendor-shaped responses (`responses`), no real sleeping."""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from fxiaoke_helpers import make_client

from connector.adapters.errors import (
    AuthError,
    CrmConnectionError,
    CrmRequestError,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    ServerError,
    TokenRefreshLimited,
)
from connector.adapters.fxiaoke import (
    DEFAULT_SPECS,
    FxiaokeAdapter,
    FxiaokeAuth,
    FxiaokeClient,
    FxiaokeCredentials,
)
from connector.adapters.http import RetryPolicy
from connector.domain import Entity, Payment
from connector.errors import ConfigError

from clock import Clock

BASE = "https://open.fxiaoke.test"
TOKEN_URL = f"{BASE}/cgi/corpAccessToken/get/V2"
QUERY_URL = f"{BASE}/cgi/crm/v2/data/query"
SECRET = "0123456789abcdef0123456789abcdef"
PERMANENT = "FEDCBA9876543210FEDCBA9876543210"
TOKENS = ["A1B2C3D4E5F60718293A4B5C6D7E8F90", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"]


def ok(**extra: Any) -> dict[str, Any]:
    return {"traceId": "E-O.fktest.1000-1a2b", "errorCode": 0, "errorMessage": "OK",
            "errorDescription": "success", **extra}


def token_body(i: int = 0, expires: int = 7200) -> dict[str, Any]:
    return {"errorCode": 0, "errorMessage": "success", "corpAccessToken": TOKENS[i],
            "corpId": "FSCID_00112233445566778899AABBCCDDEEFF", "expiresIn": expires}


def build(sleeps: list[float] | None = None, clock: Clock | None = None,
          **kw: Any) -> tuple[FxiaokeClient, FxiaokeAuth]:
    clock = clock or Clock()
    recorded = sleeps if sleeps is not None else []
    session = requests.Session()
    auth = FxiaokeAuth(BASE, FxiaokeCredentials("FSAID_abc1234", SECRET, PERMANENT), session=session,
                       clock=clock.seconds)
    client = FxiaokeClient(BASE, auth, session=session, open_user_id="FSUID_00AA", clock=clock.seconds,
                           sleep=recorded.append, pace=kw.pop("pace", None),
                           retry=RetryPolicy(max_attempts=4, jitter=False, sleep=recorded.append), **kw)
    return client, auth


@responses.activate
def test_token_cached_for_its_lifetime_and_sent_in_body() -> None:
    clock = Clock()
    responses.post(TOKEN_URL, json=token_body(0, 7200))
    responses.post(TOKEN_URL, json=token_body(1, 7200))
    responses.post(QUERY_URL, json=ok(data={"dataList": [], "offset": 0, "limit": 100, "total": 0}))
    client, auth = build(clock=clock)
    client.query_page("AccountObj")
    client.query_page("AccountObj")
    assert auth.token_calls == 1
    sent = json.loads(responses.calls[1].request.body)
    assert sent["corpAccessToken"] == TOKENS[0] and sent["currentOpenUserId"] == "FSUID_00AA"
    assert sent["data"]["dataObjectApiName"] == "AccountObj"
    assert "thirdTraceId=" in responses.calls[1].request.url
    clock.advance(7200 - 299)  # inside the refresh margin: a new token is fetched
    client.query_page("AccountObj")
    assert auth.token_calls == 2
    assert json.loads(responses.calls[-1].request.body)["corpAccessToken"] == TOKENS[1]


@responses.activate
def test_token_refresh_is_single_flight_across_threads() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def token_callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)  # hold the endpoint busy so concurrent callers would overlap
        with lock:
            in_flight -= 1
        return 200, {}, json.dumps(token_body(0))

    responses.add_callback(responses.POST, TOKEN_URL, callback=token_callback)
    responses.post(QUERY_URL, json=ok(data={"dataList": [], "offset": 0, "limit": 100, "total": 0}))
    client, auth = build()
    threads = [threading.Thread(target=client.query_page, args=("AccountObj",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert auth.token_calls == 1 and peak == 1
    assert len([c for c in responses.calls if c.request.url.startswith(QUERY_URL)]) == 8


@responses.activate
def test_expired_token_refreshed_once_and_call_retried() -> None:
    responses.post(TOKEN_URL, json=token_body(0))
    responses.post(TOKEN_URL, json=token_body(1))
    responses.post(QUERY_URL, json={"traceId": "E-O.null.-1000-x", "errorCode": 20016,
                                    "errorMessage": "the cropId,cropAccessToken or authorization is error"})
    responses.post(QUERY_URL,
                   json=ok(data={"dataList": [{"_id": "a1"}], "offset": 0, "limit": 100, "total": 0}))
    client, auth = build()
    assert client.query_page("AccountObj") == [{"_id": "a1"}]
    assert auth.token_calls == 2
    assert json.loads(responses.calls[3].request.body)["corpAccessToken"] == TOKENS[1]


@responses.activate
def test_second_20016_in_a_row_is_an_auth_error_not_a_loop() -> None:
    responses.post(TOKEN_URL, json=token_body(0))
    responses.post(TOKEN_URL, json=token_body(1))
    expired = {"traceId": "E-O.null.-1000-y", "errorCode": 20016, "errorMessage": "corpAccessToken error"}
    responses.post(QUERY_URL, json=expired)
    client, auth = build()
    with pytest.raises(AuthError) as info:
        client.query_page("AccountObj")
    assert info.value.code == "20016" and info.value.trace_id == "E-O.null.-1000-y"
    assert auth.token_calls == 2 and len(responses.calls) == 4


@pytest.mark.parametrize(("code", "error"), [
    (20006, AuthError), (20015, AuthError), (20017, AuthError), (20014, PermissionDenied),
    (20023, PermissionDenied), (30003, QuotaExhausted), (10013, CrmRequestError), (32000, CrmRequestError),
    (10006, CrmRequestError), (424242, CrmRequestError),
])
@responses.activate
def test_envelope_codes_map_to_typed_errors_with_trace_id(code: int, error: type[Exception]) -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json={"traceId": f"E-O.fktest.1000-{code}", "errorCode": code,
                                    "errorMessage": "错误", "errorDescription": "描述"})
    client, _ = build()
    with pytest.raises(error) as info:
        client.query_page("AccountObj")
    assert type(info.value) is error
    assert info.value.trace_id == f"E-O.fktest.1000-{code}"
    assert info.value.code == str(code) and info.value.status == 200
    assert f"traceId=E-O.fktest.1000-{code}" in str(info.value)
    assert len(responses.calls) == 2  # fatal errors are not retried


@pytest.mark.parametrize("code", [30004, 14001, -1, -2, 50009])
@responses.activate
def test_transient_codes_are_retried_without_real_sleep(code: int) -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json={"traceId": "t", "errorCode": code, "errorMessage": "秒频次超限"})
    responses.post(QUERY_URL, json={"traceId": "t", "errorCode": code, "errorMessage": "秒频次超限"})
    responses.post(QUERY_URL, json=ok(data={"dataList": [], "offset": 0, "limit": 100, "total": 0}))
    sleeps: list[float] = []
    client, _ = build(sleeps)
    started = time.monotonic()
    assert client.query_page("AccountObj") == []
    assert time.monotonic() - started < 1.0
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert client.stats.retries == 2


@responses.activate
def test_throttling_that_never_ends_gives_up_with_rate_limited() -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json={"traceId": "t", "errorCode": 30004, "errorMessage": "秒频次超限"})
    sleeps: list[float] = []
    client, _ = build(sleeps)
    with pytest.raises(RateLimited):
        client.query_page("AccountObj")
    assert len(sleeps) == 3  # max_attempts=4


@responses.activate
def test_network_errors_and_5xx_are_retried() -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, body=requests.ConnectionError("connection reset"))
    responses.post(QUERY_URL, status=502, body="Bad Gateway")
    responses.post(QUERY_URL,
                   json=ok(data={"dataList": [{"_id": "z"}], "offset": 0, "limit": 100, "total": 0}))
    sleeps: list[float] = []
    client, _ = build(sleeps)
    assert client.query_page("AccountObj") == [{"_id": "z"}]
    assert sleeps == [0.5, 1.0]


@responses.activate
def test_network_error_that_persists_surfaces_as_connection_error() -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, body=requests.ConnectionError("refused"))
    client, _ = build()
    with pytest.raises(CrmConnectionError):
        client.query_page("AccountObj")


@responses.activate
def test_daily_quota_stops_the_run_with_resume_time() -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json={"traceId": "t", "errorCode": 30002,
                                    "errorMessage": "当天访问频次超限（0点重新统计）"})
    client, _ = build()
    with pytest.raises(QuotaExhausted) as info:
        client.query_page("AccountObj")
    resume = info.value.resume_at
    assert resume is not None and resume.utcoffset() is not None
    assert resume.astimezone(__import__("datetime").timezone(
        __import__("datetime").timedelta(hours=8))).hour == 0
    assert len(responses.calls) == 2


@responses.activate
def test_token_endpoint_errors() -> None:
    responses.post(
        TOKEN_URL, json={
            "errorCode": 10006, "errorMessage": "the parameter appSecret is missing or illegal",
            "errorDescription": "缺少参数或参数不合法", "traceId": "open-api-gateway-web/1"
        })
    client, _ = build()
    with pytest.raises(AuthError) as info:
        client.query_page("AccountObj")
    assert info.value.code == "10006"
    responses.replace(responses.POST, TOKEN_URL,
                      json={"errorCode": 14001, "errorMessage": "接口调用超过限制"})
    client, _ = build()
    with pytest.raises(TokenRefreshLimited):
        client.query_page("AccountObj")


def _records(n: int) -> list[dict[str, Any]]:
    return [{"_id": f"{0x65000000 + i:08x}0000000000{i:06x}", "name": f"客户{i}", "owner": ["FSUID_1"],
             "last_modified_time": 1_717_171_200_000 + i, "life_status": "normal", "payment_amount": "0.10",
             "account_id": "acc"} for i in range(n)]


@responses.activate
def test_keyset_paging_reads_past_the_10000_offset_cap_exactly_once() -> None:
    rows = _records(10_250)
    seen_bodies: list[dict[str, Any]] = []

    def query(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        seen_bodies.append(body)
        info = body["data"]["search_query_info"]
        if info["offset"] > 10_000:
            return 200, {}, json.dumps({"errorCode": 10013, "errorMessage": "offset out of range 10000"})
        after = [
            f["field_values"][0] for f in info["filters"]
            if f["field_name"] == "_id" and f["operator"] == "GT"
        ]
        assert info["orders"] == [{"fieldName": "_id", "isAsc": True}]
        candidates = [r for r in rows if not after or r["_id"] > after[0]]
        page = candidates[info["offset"]:info["offset"] + info["limit"]]
        return 200, {}, json.dumps(
            ok(data={"dataList": page, "offset": info["offset"], "limit": info["limit"], "total": 0}))

    responses.post(TOKEN_URL, json=token_body())
    responses.add_callback(responses.POST, QUERY_URL, callback=query)
    client, _ = build()
    iterator = client.iter_records("PaymentObj")
    first = next(iterator)  # lazy: one page fetched so far
    assert first["_id"] == rows[0]["_id"] and len(seen_bodies) == 1
    ids = [first["_id"], *(r["_id"] for r in iterator)]
    assert ids == [r["_id"] for r in rows]
    assert len(seen_bodies) == 103  # ceil(10250 / 100)
    assert all(b["data"]["search_query_info"]["offset"] == 0 for b in seen_bodies)


@responses.activate
def test_paging_that_does_not_advance_is_refused() -> None:
    rows = _records(100)
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json=ok(data={"dataList": rows, "offset": 0, "limit": 100, "total": 0}))
    client, _ = build()
    with pytest.raises(ServerError, match="did not advance"):
        list(client.iter_records("PaymentObj"))


@responses.activate
def test_incremental_query_sends_watermark_and_custom_path() -> None:
    url = f"{BASE}/cgi/crm/custom/v2/data/query"
    responses.post(TOKEN_URL, json=token_body())
    responses.post(url, json=ok(data={"dataList": [], "offset": 0, "limit": 100, "total": 0}))
    client, _ = build()
    assert list(client.iter_records("prepay_contract__c", since_ms=1_717_171_200_000)) == []
    info = json.loads(responses.calls[1].request.body)["data"]["search_query_info"]
    assert {"field_name": "last_modified_time", "field_values": [1_717_171_200_000],
            "operator": "GTE"} in info["filters"]


@responses.activate
def test_string_amounts_become_exact_decimals() -> None:
    rows = [{
        "_id": "65a000000000000000000001", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_000,
        "life_status": "normal", "account_id": "acc1", "payment_amount": "1234567890123.45",
        "payment_time": 1_717_171_200_000
    }, {
        "_id": "65a000000000000000000002", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_001,
        "life_status": "normal", "account_id": "acc1", "payment_amount": "0.10",
        "payment_time": 1_717_171_200_000
    }, {
        "_id": "65a000000000000000000003", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_002,
        "life_status": "normal", "account_id": "acc1", "payment_amount": "12.345",
        "payment_time": 1_717_171_200_000
    }, {
        "_id": "65a000000000000000000004", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_003,
        "life_status": "normal", "account_id": "acc1", "payment_amount": 12.5,
        "payment_time": 1_717_171_200_000
    }]
    rows = [{"contract_id__c": None, "payment_term": None, "name": None, **row}
            for row in rows]  # includeNull
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json=ok(data={"dataList": rows, "offset": 0, "limit": 100, "total": 0}))
    client, _ = build()
    adapter = FxiaokeAdapter(client)
    out = list(adapter.stream(DEFAULT_SPECS[Entity.PAYMENT]))
    assert [type(r) for r in out] == [Payment, Payment, Payment]
    # a JSON number is decoded exactly (never a float), so 12.5 is 12.50
    assert [r.amount for r in out] == [Decimal("1234567890123.45"), Decimal("0.10"), Decimal("12.50")]  # type: ignore[union-attr]
    assert [(r.crm_id, r.field) for r in adapter.rejected] == [("65a000000000000000000003", "payment_amount")]
    assert "more than 2 decimal places" in adapter.rejected[0].message


@responses.activate
@pytest.mark.parametrize(("amount", "why"), [
    ("1,234.50", "',' is not accepted"), ("1e5", "exponents"), ("１００", "non-ASCII"), (" 100", "spaces"),
    ("-5", "must be positive"), ("99999999999999999999.99", "above the limit"), ("NaN", "is not an amount"),
])
def test_string_amounts_follow_the_one_grammar(amount: str, why: str) -> None:
    rows = [{
        "_id": "65a000000000000000000009", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_000,
        "life_status": "normal", "account_id": "acc1", "payment_amount": amount,
        "payment_time": 1_717_171_200_000, "contract_id__c": None, "payment_term": None, "name": None
    }]  # includeNull: empty fields come as null
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json=ok(data={"dataList": rows, "offset": 0, "limit": 100, "total": 0}))
    client, _ = build()
    adapter = FxiaokeAdapter(client)
    assert list(adapter.stream(DEFAULT_SPECS[Entity.PAYMENT])) == []
    assert [(r.crm_id, r.field) for r in adapter.rejected] == [("65a000000000000000000009", "payment_amount")]
    assert why in adapter.rejected[0].message and repr(amount) in adapter.rejected[0].message


@responses.activate
@pytest.mark.parametrize("stamp", [10**20, -5, "99999999999999999999"])
def test_times_out_of_range_reject_the_record_not_the_run(stamp: object) -> None:
    rows = [{
        "_id": "65a00000000000000000000a", "owner": ["FSUID_1"], "last_modified_time": 1_717_171_200_000,
        "life_status": "normal", "account_id": "acc1", "payment_amount": "5", "payment_time": stamp,
        "contract_id__c": None, "payment_term": None, "name": None
    }]  # includeNull: empty fields come as null
    responses.post(TOKEN_URL, json=token_body())
    responses.post(QUERY_URL, json=ok(data={"dataList": rows, "offset": 0, "limit": 100, "total": 0}))
    client, _ = build()
    adapter = FxiaokeAdapter(client)
    assert list(adapter.stream(DEFAULT_SPECS[Entity.PAYMENT])) == []
    assert "between 1970 and 9998" in adapter.rejected[0].message


@responses.activate
def test_secrets_never_reach_errors_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(TOKEN_URL, json=token_body())
    echo = f"corpAccessToken={TOKENS[0]} appSecret={SECRET} raw {TOKENS[0]}"
    responses.post(QUERY_URL, json={"traceId": "t1", "errorCode": 32000, "errorMessage": echo})
    responses.post(f"{BASE}/cgi/crm/v2/data/get", body=requests.ConnectionError(f"boom {SECRET} {TOKENS[0]}"))
    client, auth = build()
    with pytest.raises(CrmRequestError) as info:
        client.query_page("AccountObj")
    with pytest.raises(CrmConnectionError) as info2:
        client.get_record("AccountObj", "x")
    texts = [
        str(info.value),
        repr(info.value),
        json.dumps(info.value.to_dict()),
        str(info2.value),
        repr(info2.value),
        repr(client),
        repr(auth),
        repr(auth.token()),
        repr(auth._credentials), caplog.text
    ]
    for text in texts:
        assert TOKENS[0] not in text and SECRET not in text and PERMANENT not in text


def test_credentials_from_env_names_the_missing_variable_only() -> None:
    env = {"MY_APP": "FSAID_1", "MY_SECRET": SECRET}
    with pytest.raises(ConfigError) as info:
        FxiaokeCredentials.from_env(
            {"app_id": "MY_APP", "app_secret": "MY_SECRET", "permanent_code": "MY_CODE"}, env)
    assert "MY_CODE" in info.value.message and SECRET not in info.value.message
    env["MY_CODE"] = PERMANENT
    creds = FxiaokeCredentials.from_env(
        {"app_id": "MY_APP", "app_secret": "MY_SECRET", "permanent_code": "MY_CODE"}, env)
    assert creds.permanent_code.get_secret_value() == PERMANENT and PERMANENT not in repr(creds)


@responses.activate
def test_open_user_id_resolved_once_by_mobile() -> None:
    responses.post(TOKEN_URL, json=token_body())
    responses.post(f"{BASE}/cgi/user/getByMobile",
                   json=ok(empList=[{"openUserId": "FSUID_MOBILE1", "name": "张三",
                                     "mobile": "13800000000"}]))
    responses.post(QUERY_URL, json=ok(data={"dataList": [], "offset": 0, "limit": 100, "total": 0}))
    session = requests.Session()
    auth = FxiaokeAuth(BASE, FxiaokeCredentials("FSAID_1", SECRET, PERMANENT), session=session)
    client = FxiaokeClient(BASE, auth, session=session, mobile="13800000000", pace=None)
    client.query_page("AccountObj")
    client.query_page("AccountObj")
    lookup = json.loads(responses.calls[1].request.body)
    assert lookup["mobile"] == "13800000000" and "currentOpenUserId" not in lookup
    assert json.loads(responses.calls[-1].request.body)["currentOpenUserId"] == "FSUID_MOBILE1"
    assert len([c for c in responses.calls if "getByMobile" in c.request.url]) == 1


@responses.activate
def test_update_is_partial_with_id_inside_object_data_and_triggers_off() -> None:
    url = f"{BASE}/cgi/crm/v2/data/update"
    responses.post(TOKEN_URL, json=token_body())
    responses.post(url, json=ok())
    client, _ = build()
    import datetime as dt
    client.update(
        "AccountObj", "65a0", {
            "prepaid_balance__c": Decimal("1234.50"), "prepaid_synced_at__c": dt.datetime(
                2024, 6, 1, tzinfo=dt.timezone.utc)
        })
    body = json.loads(responses.calls[1].request.body)
    assert body["triggerWorkFlow"] is False and body["triggerApprovalFlow"] is False
    assert body["data"]["object_data"] == {
        "prepaid_balance__c": "1234.50", "prepaid_synced_at__c": 1717200000000, "_id": "65a0",
        "dataObjectApiName": "AccountObj"
    }


def test_client_pacer_waits_instead_of_getting_throttled() -> None:
    from connector.adapters.fxiaoke.client import PathPacer
    clock = Clock()
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock.advance(s)

    pacer = PathPacer(3, 20.0, clock.seconds, sleep, margin=0.0)
    for _ in range(7):
        pacer.acquire("/q")
    pacer.acquire("/other")
    assert waits == [20.0, 20.0] and pacer.waited == 40.0


def test_our_client_sends_a_fresh_third_trace_id_on_every_call(sandbox_app: Any) -> None:
    app = sandbox_app(seed=150, require_trace_id=True)
    adapter = FxiaokeAdapter(make_client(app))
    assert len(list(adapter.stream(DEFAULT_SPECS[Entity.CUSTOMER]))) == 150  # token, directory, two pages
    assert app.counters.calls["/cgi/crm/v2/data/query"] == 2
