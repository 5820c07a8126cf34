"""The sandbox's token endpoint in every encoding Zoho's SDKs send, and every CRM API version Zoho serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from zoho_helpers import FakeClock

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.adapters.zoho.sandbox.app import GRANT_TOKEN_TTL
from connector.adapters.zoho.sandbox.versions import VERSIONS


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[ZohoSandbox]:
    with ZohoSandbox(seed=30, clock=clock.seconds) as sandbox:
        yield sandbox


def _post(sb: ZohoSandbox, encoding: str, fields: dict[str, str]) -> requests.Response:
    """POST the token endpoint with `fields` as query string, urlencoded form or multipart form."""
    url = sb.accounts_url + "/oauth/v2/token"
    if encoding == "query":
        return requests.post(url, params=fields, timeout=10)
    if encoding == "form":
        return requests.post(url, data=fields, timeout=10)
    # `files` makes requests build multipart/form-data, as the Node SDK v8 (form-data) does
    return requests.post(url, files={k: (None, v) for k, v in fields.items()}, timeout=10)


ENCODINGS = ["query", "form", "multipart"]


def _refresh_fields(sb: ZohoSandbox, **over: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token, **over}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_refresh_grant_in_every_encoding(sb: ZohoSandbox, encoding: str) -> None:
    resp = _post(sb, encoding, _refresh_fields(sb))
    assert resp.status_code == 200
    body = resp.json()
    assert body["access_token"] and body["api_domain"] == sb.api_domain and "refresh_token" not in body
    api = requests.get(sb.api_domain + "/crm/v8/org", headers={"Authorization": "Zoho-oauthtoken "
                                                                + body["access_token"]}, timeout=10)
    assert api.status_code == 200


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_refusals_read_the_same_in_every_encoding(sb: ZohoSandbox, encoding: str) -> None:
    assert _post(sb, encoding, _refresh_fields(sb, refresh_token="nope")).json() == {"error": "invalid_code"}
    assert _post(sb, encoding, _refresh_fields(sb, client_id="x")).json() == {"error": "invalid_client"}
    assert _post(sb, encoding, _refresh_fields(sb, grant_type="password")).json() == {
        "error": "unsupported_grant_type"}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_grant_token_exchange_in_every_encoding(sb: ZohoSandbox, encoding: str) -> None:
    code = sb.app.issue_grant_token()
    fields = {
        "grant_type": "authorization_code", "client_id": sb.config.client_id,
        "client_secret": sb.config.client_secret, "redirect_uri": "https://example.invalid/cb", "code": code
    }
    body = _post(sb, encoding, fields).json()
    assert body["refresh_token"] == sb.config.refresh_token and body["access_token"]
    assert body["api_domain"] == sb.api_domain and body["expires_in"] == sb.config.token_ttl
    # single use: the same grant token again is refused like a bad one
    assert _post(sb, encoding, fields).json() == {"error": "invalid_code"}


def test_grant_token_expires_after_three_minutes(sb: ZohoSandbox, clock: FakeClock) -> None:
    code = sb.app.issue_grant_token()
    clock.advance(GRANT_TOKEN_TTL + 1)
    fields = {"grant_type": "authorization_code", "client_id": sb.config.client_id,
              "client_secret": sb.config.client_secret, "code": code}
    assert _post(sb, "form", fields).json() == {"error": "invalid_code"}


# -- API versions -----------------------------------------------------------------------------


class Api:
    """Calls one API version with a fresh token."""

    def __init__(self, sb: ZohoSandbox, version: str) -> None:
        self.sb, self.version = sb, version
        self.token = _post(sb, "form", _refresh_fields(sb)).json()["access_token"]

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.sb.api_domain}/crm/{self.version}{path}", timeout=10,
                                headers={"Authorization": f"Zoho-oauthtoken {self.token}"}, **kw)


@pytest.mark.parametrize("version", list(VERSIONS))
def test_every_served_version_answers(sb: ZohoSandbox, version: str) -> None:
    api = Api(sb, version)
    assert api("GET", "/org").status_code == 200
    listed = api("GET", "/Accounts", params={"fields": "Account_Name", "per_page": 5})
    assert listed.status_code == 200 and len(listed.json()["data"]) == 5
    assert api("GET", "/settings/fields", params={"module": "Accounts"}).status_code == 200


@pytest.mark.parametrize("path",
                         ["/crm/v1/Accounts", "/crm/v9/Accounts", "/crm/v2.2/Accounts", "/crm/Accounts"])
def test_unknown_versions_are_not_served(sb: ZohoSandbox, path: str) -> None:
    resp = requests.get(sb.api_domain + path, timeout=10)
    assert resp.status_code == 404 and resp.json()["code"] == "INVALID_URL_PATTERN"


@pytest.mark.parametrize("version", ["v2", "v2.1"])
def test_v2_lists_without_fields_and_pages_by_number_past_2000(version: str) -> None:
    with ZohoSandbox(seed=2100, related=False) as sb:
        api = Api(sb, version)
        first = api("GET", "/Accounts", params={"per_page": 200})
        assert first.status_code == 200
        assert "Ledger_Customer_ID" in first.json()["data"][0]  # no `fields`: every field
        assert set(first.json()["info"]) == {"per_page", "count", "page", "more_records"}
        last = api("GET", "/Accounts", params={"page": 11, "per_page": 200})
        assert last.status_code == 200 and last.json()["info"] == {
            "per_page": 200, "count": 100, "page": 11, "more_records": False}


@pytest.mark.parametrize("version", ["v3", "v4", "v5", "v6", "v7", "v8"])
def test_v3_and_later_require_fields_and_cap_page_numbers(version: str) -> None:
    with ZohoSandbox(seed=2100, related=False) as sb:
        api = Api(sb, version)
        missing = api("GET", "/Accounts")
        assert missing.status_code == 400 and missing.json()["code"] == "REQUIRED_PARAM_MISSING"
        capped = api("GET", "/Accounts", params={"fields": "Account_Name", "page": 11, "per_page": 200})
        assert capped.status_code == 400 and capped.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
        page = api("GET", "/Accounts", params={"fields": "Account_Name", "page": 10, "per_page": 200})
        assert page.json()["info"]["next_page_token"]


@pytest.mark.parametrize(("version", "visible_key"), [("v2", "visible"), ("v4", "visible"), ("v5", "status"),
                                                      ("v8", "status")])
def test_modules_key_visible_became_status_in_v5(sb: ZohoSandbox, version: str, visible_key: str) -> None:
    [meta] = Api(sb, version)("GET", "/settings/modules/Accounts").json()["modules"]
    assert visible_key in meta
    assert ({"visible", "status"} - {visible_key}).isdisjoint(meta)


@pytest.mark.parametrize(("version", "has_id"), [("v2", False), ("v3", False), ("v4", True), ("v8", True)])
def test_id_is_a_listed_field_from_v4(sb: ZohoSandbox, version: str, has_id: bool) -> None:
    fields = Api(sb, version)("GET", "/settings/fields", params={"module": "Accounts"}).json()["fields"]
    assert ("id" in {f["api_name"] for f in fields}) is has_id


@pytest.mark.parametrize(("version", "limit", "ok"), [("v2", 200, True), ("v2", 201, False),
                                                      ("v3", 201, False), ("v4", 2000, True),
                                                      ("v8", 2000, True)])
def test_coql_limit_per_call_by_version(sb: ZohoSandbox, version: str, limit: int, ok: bool) -> None:
    resp = Api(sb, version)("POST", "/coql", json={
        "select_query": f"select Account_Name from Accounts where id is not null limit {limit}"})
    assert (resp.status_code == 200) is ok
    if not ok:
        assert resp.json()["code"] == "LIMIT_EXCEEDED"


@pytest.mark.parametrize(("version", "ok"), [("v6", False), ("v7", True)])
def test_coql_offset_total_grew_to_100000_in_v7(sb: ZohoSandbox, version: str, ok: bool) -> None:
    resp = Api(sb, version)("POST", "/coql", json={
        "select_query": "select Account_Name from Accounts where id is not null limit 20000, 100"})
    assert (resp.status_code in (200, 204)) is ok
