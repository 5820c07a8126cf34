"""Client behaviour against canned Zoho bodies (`responses`): refresh, retries, errors, paging, writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from zoho_helpers import ACCESS_TOKEN, API, CLIENT_SECRET, REFRESH_TOKEN, TOKEN_URL, error_body, token_body

from connector.adapters.errors import (
    AuthError,
    CrmError,
    CrmNotFound,
    CrmRequestError,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    ServerError,
)
from connector.adapters.zoho.client import ZohoClient, encode, parse_time

ACCOUNTS_URL = f"{API}/crm/v8/Accounts"
IST = timezone(timedelta(hours=5, minutes=30))
Make = Callable[..., ZohoClient]


@pytest.fixture(autouse=True)
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=token_body())
        yield mock


def test_auth_header_and_decimal_numbers(make_client: Make, mocked: Any) -> None:
    mocked.get(f"{API}/crm/v8/Accounts/1", json={"data": [{"id": "1", "Prepaid_Balance": 1250.10}]})
    row = make_client().get_record("Accounts", "1")
    assert row is not None and row["Prepaid_Balance"] == Decimal("1250.10")
    assert mocked.calls[-1].request.headers["Authorization"] == f"Zoho-oauthtoken {ACCESS_TOKEN}"


def test_refresh_once_on_invalid_token(make_client: Make, mocked: Any) -> None:
    mocked.post(TOKEN_URL, json=token_body("1000.1111222233334444aaaa.5555666677778888bbbb"))
    mocked.get(f"{API}/crm/v8/Accounts/1", status=401, json=error_body("INVALID_TOKEN",
                                                                       "invalid oauth token"))
    mocked.get(f"{API}/crm/v8/Accounts/1", json={"data": [{"id": "1"}]})
    client = make_client()
    assert client.get_record("Accounts", "1") == {"id": "1"}
    token_calls = [c for c in mocked.calls if c.request.url.startswith(TOKEN_URL)]
    assert len(token_calls) == 2


def test_invalid_token_twice_is_auth_error(make_client: Make, mocked: Any) -> None:
    mocked.get(f"{API}/crm/v8/Accounts/1", status=401, json=error_body("INVALID_TOKEN",
                                                                       "invalid oauth token"))
    with pytest.raises(AuthError) as info:
        make_client().get_record("Accounts", "1")
    assert info.value.code == "INVALID_TOKEN" and info.value.status == 401


def test_retries_server_errors_with_backoff_no_real_sleep(make_client: Make, mocked: Any,
                                                          sleeps: list[float]) -> None:
    url = f"{API}/crm/v8/Accounts/1"
    mocked.get(url, status=500, json=error_body("INTERNAL_ERROR", "Internal Server Error"))
    mocked.get(url, body=requests.ConnectionError("reset"))
    mocked.get(url, status=503, body="")
    mocked.get(url, json={"data": [{"id": "1"}]})
    assert make_client().get_record("Accounts", "1") == {"id": "1"}
    assert sleeps == [0.5, 1.0, 2.0]


def test_retry_gives_up_after_max_attempts(make_client: Make, mocked: Any, sleeps: list[float]) -> None:
    mocked.get(f"{API}/crm/v8/Accounts/1", status=500, json=error_body("INTERNAL_ERROR",
                                                                       "Internal Server Error"))
    with pytest.raises(ServerError):
        make_client().get_record("Accounts", "1")
    assert len(sleeps) == 3


def test_429_is_retried_then_quota_exhausted_when_no_credits(make_client: Make, mocked: Any,
                                                            sleeps: list[float]) -> None:
    url = f"{API}/crm/v8/Accounts/1"
    mocked.get(url, status=429, json=error_body("TOO_MANY_REQUESTS"))
    mocked.get(url, json={"data": [{"id": "1"}]}, headers={"X-API-CREDITS-REMAINING": "40"})
    client = make_client()
    assert client.get_record("Accounts", "1") == {"id": "1"}
    assert sleeps == [0.5] and client.usage().remaining == 40
    mocked.replace(responses.GET, url, status=429, json=error_body("TOO_MANY_REQUESTS"),
                   headers={"X-API-CREDITS-REMAINING": "0"})
    with pytest.raises(QuotaExhausted) as info:
        client.get_record("Accounts", "1")
    assert info.value.resume_at is not None
    assert len(sleeps) == 1  # quota exhaustion is not slept on


def test_validation_error_not_retried(make_client: Make, mocked: Any, sleeps: list[float]) -> None:
    mocked.get(
        ACCOUNTS_URL, status=400, json=error_body("REQUIRED_PARAM_MISSING",
                                                  "One of the expected parameter is "
                                                  "missing", {"param_name": "fields"}))
    with pytest.raises(CrmRequestError) as info:
        list(make_client().iter_records("Accounts", ["Account_Name"]))
    assert sleeps == [] and info.value.details == {"param_name": "fields"}


@pytest.mark.parametrize("status,code,cls", [
    (401, "OAUTH_SCOPE_MISMATCH", AuthError), (401, "AUTHENTICATION_FAILURE", AuthError),
    (403, "NO_PERMISSION", PermissionDenied), (400, "INVALID_MODULE", CrmNotFound),
    (404, "INVALID_URL_PATTERN", CrmNotFound), (400, "INVALID_DATA", CrmRequestError),
    (400, "AUTHORIZATION_FAILED", PermissionDenied), (412, "ALREADY_MODIFIED", CrmRequestError),
    (418, "SOMETHING_NEW", CrmRequestError),
])
def test_error_table(make_client: Make, mocked: Any, status: int, code: str, cls: type[CrmError]) -> None:
    mocked.get(f"{API}/crm/v8/Accounts/1", status=status, json=error_body(code, "nope"))
    with pytest.raises(cls) as info:
        make_client().get_record("Accounts", "1")
    err = info.value
    assert type(err) is cls and err.status == status and err.code == code and err.message == "nope"
    assert err.request.startswith("GET /crm/v8/Accounts/1") and err.crm == "zoho"


def test_tokens_redacted_in_errors_and_logs(make_client: Make, mocked: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    leaky = f"bad token Zoho-oauthtoken {ACCESS_TOKEN} refresh_token={REFRESH_TOKEN} secret {CLIENT_SECRET}"
    mocked.get(f"{API}/crm/v8/Accounts/1", status=500, json=error_body("INTERNAL_ERROR", leaky,
                                                                      {"access_token": ACCESS_TOKEN}))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ServerError) as info:
        make_client().get_record("Accounts", "1")
    text = str(info.value) + repr(info.value) + json.dumps(info.value.to_dict()) + str(info.value.details)
    logs = caplog.text
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in text and secret not in logs


def _page(ids: range, more: bool, token: str | None, day: int = 1) -> dict[str, Any]:
    rows = [{
        "id": str(i), "Account_Name": f"A{i}", "Modified_Time": f"2026-01-0{day}T10:00:{i % 60:02d}+05:30"
    } for i in ids]
    return {"data": rows, "info": {"per_page": 200, "count": len(rows), "page": 1, "more_records": more,
                                   "next_page_token": token, "sort_by": "Modified_Time", "sort_order": "asc"}}


def test_paging_crosses_2000_with_page_token_lazily(make_client: Make, mocked: Any) -> None:
    seen: list[dict[str, str]] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}
        seen.append(query)
        n = len(seen) - 1
        if "page" in query and int(query["page"]) > 10:
            return 400, {}, json.dumps(error_body("DISCRETE_PAGINATION_LIMIT_EXCEEDED"))
        body = _page(range(n * 200, n * 200 + 200), more=n < 11, token=f"tok{n + 1}" if n < 11 else None)
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    mocked.add_callback(responses.GET, ACCOUNTS_URL, callback=callback)
    gen = make_client().iter_records("Accounts", ["Account_Name"])
    first = next(gen)
    assert first["id"] == "0" and len(seen) == 1  # lazy: one page fetched for the first record
    rest = list(gen)
    assert len(rest) + 1 == 2400 and len({r["id"] for r in rest}) == 2399
    assert "page_token" not in seen[0] and all(q["page_token"] == f"tok{i}"
                                               for i, q in enumerate(seen[1:], 1))
    assert all(q["per_page"] == "200" and q["sort_order"] == "asc" and q["sort_by"] == "Modified_Time"
               for q in seen)
    assert all(q["fields"] == "Account_Name,Modified_Time" for q in seen)


def test_overlap_window_and_dedup_by_id_and_modified_time(make_client: Make, mocked: Any) -> None:
    rows = [{"id": "1", "Modified_Time": "2026-01-05T10:15:00+05:30"},
            {"id": "2", "Modified_Time": "2026-01-05T04:45:00Z"},
            {"id": "1", "Modified_Time": "2026-01-05T04:45:00+00:00"},  # same instant as row 1, other offset
            {"id": "1", "Modified_Time": "2026-01-05T10:15:09+05:30"}]  # a newer version: kept
    mocked.get(ACCOUNTS_URL, json={"data": rows, "info": {"more_records": False}})
    since = datetime(2026, 1, 5, 4, 45, 5, tzinfo=timezone.utc)
    got = list(make_client().iter_records("Accounts", ["Account_Name"], since=since,
                                          overlap=timedelta(seconds=10)))
    assert [(r["id"], r["Modified_Time"]) for r in got] == [("1", "2026-01-05T10:15:00+05:30"),
                                                            ("2", "2026-01-05T04:45:00Z"),
                                                            ("1", "2026-01-05T10:15:09+05:30")]
    assert mocked.calls[-1].request.headers["If-Modified-Since"] == "2026-01-05T04:44:55+00:00"


def test_overlap_is_at_least_one_second(make_client: Make, mocked: Any) -> None:
    mocked.get(ACCOUNTS_URL, status=304)
    since = datetime(2026, 1, 5, 4, 45, 5, tzinfo=timezone.utc)
    assert list(make_client().iter_records("Accounts", ["Account_Name"], since=since)) == []
    assert mocked.calls[-1].request.headers["If-Modified-Since"] == "2026-01-05T04:45:04+00:00"


def test_chain_restarts_after_100k(make_client: Make, mocked: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.adapters.zoho.client.TOKEN_CHAIN_LIMIT", 400)
    calls: list[tuple[dict[str, str], str | None]] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}
        calls.append((query, request.headers.get("If-Modified-Since")))
        n = len(calls) - 1
        if n < 2:
            return 200, {}, json.dumps(_page(range(n * 200, n * 200 + 200), True, f"t{n + 1}"))
        # the new chain starts one second before the last seen time: rows 398..399 come back again
        return 200, {}, json.dumps(_page(range(340, 450), False, None))

    mocked.add_callback(responses.GET, ACCOUNTS_URL, callback=callback)
    got = list(make_client().iter_records("Accounts", ["Account_Name"]))
    assert len(calls) == 3 and calls[2][1] is not None and "page_token" not in calls[2][0]
    assert [int(r["id"]) for r in got] == list(range(450))


def test_fields_limit(make_client: Make) -> None:
    with pytest.raises(CrmRequestError, match="51 fields"):
        list(make_client().iter_records("Accounts", [f"F{i}" for i in range(50)]))


def test_empty_module_204(make_client: Make, mocked: Any) -> None:
    mocked.get(ACCOUNTS_URL, status=204)
    assert list(make_client().iter_records("Accounts", ["Account_Name"])) == []


def test_write_batches_trigger_and_207(make_client: Make, mocked: Any) -> None:
    bodies: list[dict[str, Any]] = []

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}", parse_float=Decimal)
        bodies.append(body)
        items = []
        for i, row in enumerate(body["data"]):
            if row.get("Prepaid_Balance") == "abc":
                items.append({
                    "code": "INVALID_DATA", "message": "invalid data", "status": "error", "details": {
                        "expected_data_type": "double", "api_name": "Prepaid_Balance",
                        "json_path": f"$.data[{i}].Prepaid_Balance"
                    }
                })
            else:
                items.append({"code": "SUCCESS", "message": "record updated", "status": "success",
                              "details": {"id": row["id"], "Modified_Time": "2026-01-05T10:20:11+05:30"}})
        ok = all(i["status"] == "success" for i in items)
        return (200 if ok else 207), {}, json.dumps({"data": items})

    mocked.add_callback(responses.PUT, ACCOUNTS_URL, callback=callback)
    records = [{"id": str(i), "Prepaid_Balance": Decimal("10.10")} for i in range(250)]
    records[120]["Prepaid_Balance"] = "abc"
    client = make_client()
    out = client.update("Accounts", records)
    assert [len(b["data"]) for b in bodies] == [100, 100, 50]
    assert all(b["trigger"] == [] for b in bodies)
    assert b'"Prepaid_Balance":10.10' in (mocked.calls[-1].request.body or b"")
    assert len(out) == 250 and [o.index for o in out] == list(range(250))
    bad = out[120]
    assert (not bad.ok and bad.code == "INVALID_DATA" and bad.field == "Prepaid_Balance"
            and bad.record_id is None)
    assert all(o.ok for i, o in enumerate(out) if i != 120)
    usage = client.usage()
    assert usage.by_type["write:credits"] == 10 + 10 + 5


def test_all_failed_400_still_gives_outcomes(make_client: Make, mocked: Any) -> None:
    item = {"code": "MANDATORY_NOT_FOUND", "message": "required field not found", "status": "error",
            "details": {"api_name": "Subject", "json_path": "$.data[0].Subject"}}
    mocked.post(f"{API}/crm/v8/Tasks", status=400, json={"data": [item]})
    client = make_client(trigger=["workflow"])
    [outcome] = client.insert("Tasks", [{"Description": "x"}])
    assert not outcome.ok and outcome.field == "Subject"
    assert json.loads(mocked.calls[-1].request.body)["trigger"] == ["workflow"]


def test_insert_not_retried_on_server_error(make_client: Make, mocked: Any, sleeps: list[float]) -> None:
    mocked.post(f"{API}/crm/v8/Tasks", status=500, json=error_body("INTERNAL_ERROR"))
    with pytest.raises(ServerError):
        make_client().insert("Tasks", [{"Subject": "x"}])
    assert sleeps == [] and len([c for c in mocked.calls if "Tasks" in c.request.url]) == 1


def test_insert_retried_on_429(make_client: Make, mocked: Any, sleeps: list[float]) -> None:
    mocked.post(f"{API}/crm/v8/Tasks", status=429, json=error_body("TOO_MANY_REQUESTS"))
    mocked.post(
        f"{API}/crm/v8/Tasks", status=201, json={
            "data": [{
                "code": "SUCCESS", "status": "success", "message": "record added", "details": {"id": "9"}
            }]
        })
    [outcome] = make_client().insert("Tasks", [{"Subject": "x"}])
    assert outcome.ok and outcome.record_id == "9" and sleeps == [0.5]


def test_rate_limited_carries_type(make_client: Make, mocked: Any) -> None:
    mocked.get(f"{API}/crm/v8/Accounts/1", status=429, json=error_body("TOO_MANY_REQUESTS"))
    with pytest.raises(RateLimited):
        make_client().get_record("Accounts", "1")


def test_usage_accounting(make_client: Make, mocked: Any) -> None:
    mocked.get(
        f"{API}/crm/v8/Accounts/deleted", json={
            "data": [{"id": "5", "deleted_time": "2026-01-04T11:19:38+05:30", "type": "recycle"}],
            "info": {"more_records": False}
        })
    mocked.post(f"{API}/crm/v8/coql", json={"data": [], "info": {"count": 0, "more_records": False}})
    client = make_client()
    assert [d["id"] for d in client.iter_deleted("Accounts")] == ["5"]
    client.coql("select id from Tasks where id is not null limit 0, 2000", limit=2000)
    usage = client.usage()
    assert usage.calls == 2 and usage.credits == 5
    assert usage.by_type == {"deleted:calls": 1, "deleted:credits": 2, "coql:calls": 1, "coql:credits": 3}


def test_encode_and_parse_time() -> None:
    assert encode({"a": Decimal("0.10"), "b": [Decimal("-3")]}) == '{"a":0.10,"b":[-3]}'
    with pytest.raises(TypeError):
        encode({"a": 0.1})
    assert parse_time("2026-01-05T10:15:00+05:30") == parse_time("2026-01-05T04:45:00Z")


def test_overlap_dedup_stays_linear_when_thousands_share_one_second() -> None:
    from connector.adapters.zoho.client import _RecentKeys

    keys = _RecentKeys(timedelta(seconds=2))
    stamp = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)  # a bulk edit: every record in one second
    rebuilds = 0
    for n in range(10_000):
        before = keys.prune_at
        assert keys.seen(str(n), stamp) is False
        rebuilds += keys.prune_at != before
    assert rebuilds <= 6  # the set is rebuilt only when it has doubled, not on every record
    assert keys.seen("17", stamp) is True and keys.seen("17", stamp + timedelta(seconds=1)) is False
