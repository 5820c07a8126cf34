"""OAuth refresh-token grant: data centres, caching, early refresh, single flight, errors, secrets."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
import requests
import responses
from pydantic import SecretStr
from zoho_helpers import CLIENT_SECRET, REFRESH_TOKEN, TOKEN_URL, FakeClock, token_body

from connector import redact
from connector.adapters.errors import AuthError, CrmConnectionError, TokenRefreshLimited
from connector.adapters.zoho.auth import DATA_CENTERS, ZohoAuth, ZohoAuthConfig, ZohoCredentials
from connector.errors import ConfigError


def make_auth(clock: FakeClock, **config: object) -> ZohoAuth:
    creds = ZohoCredentials("1000.CLIENTID", SecretStr(CLIENT_SECRET), SecretStr(REFRESH_TOKEN))
    return ZohoAuth(ZohoAuthConfig(**config), creds, session=requests.Session(), clock=clock.seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize("dc,accounts,api", [
    ("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
    ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    ("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    ("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
])
def test_data_centres(dc: str, accounts: str, api: str) -> None:
    config = ZohoAuthConfig(data_center=dc)
    assert config.token_url() == accounts + "/oauth/v2/token"
    assert config.default_api_domain() == api
    assert set(DATA_CENTERS) == {"us", "eu", "in", "au", "cn", "jp", "ca", "sa"}


def test_explicit_urls_and_unknown_dc() -> None:
    config = ZohoAuthConfig(accounts_url="http://127.0.0.1:9/", api_domain="http://127.0.0.1:9")
    assert config.token_url() == "http://127.0.0.1:9/oauth/v2/token"
    with pytest.raises(ConfigError, match="data_center 'mars'"):
        ZohoAuthConfig(data_center="mars").token_url()


def test_credentials_from_named_env_vars_and_hidden() -> None:
    config = ZohoAuthConfig(client_id_env="MY_ID", client_secret_env="MY_SECRET", refresh_token_env="MY_RT")
    creds = ZohoCredentials.from_env(config,
                                     {"MY_ID": "cid", "MY_SECRET": CLIENT_SECRET, "MY_RT": REFRESH_TOKEN})
    assert CLIENT_SECRET not in repr(creds) and REFRESH_TOKEN not in repr(creds)
    with pytest.raises(ConfigError, match="MY_SECRET, MY_RT"):
        ZohoCredentials.from_env(config, {"MY_ID": "cid"})


@responses.activate
def test_token_cached_refreshed_early_and_api_domain_used(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json=token_body("1000.aaaa1111bbbb2222cccc.dddd3333eeee4444ffff",
                                              api_domain="https://www.zohoapis.eu"))
    auth = make_auth(clock)
    first = auth.access_token()
    assert auth.access_token() == first and len(responses.calls) == 1
    assert auth.api_domain == "https://www.zohoapis.eu"
    body = responses.calls[0].request.body
    assert "grant_type=refresh_token" in body and "client_secret=" in body  # form body, like the SDK
    clock.advance(3600 - 299)  # inside the 300 s early-refresh margin
    auth.access_token()
    assert len(responses.calls) == 2


@responses.activate
def test_old_expires_in_sec_shape(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json={"access_token": "x" * 20, "expires_in_sec": 3600, "expires_in": 3600000})
    auth = make_auth(clock)
    auth.access_token()
    clock.advance(3000)
    auth.access_token()
    assert len(responses.calls) == 1


@responses.activate
def test_invalid_refresh_token_is_auth_error_without_secrets(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json={"error": "invalid_code"}, status=200)
    with pytest.raises(AuthError, match="invalid or revoked") as info:
        make_auth(clock).access_token()
    text = str(info.value) + repr(info.value) + str(info.value.to_dict())
    assert CLIENT_SECRET not in text and REFRESH_TOKEN not in text
    assert not isinstance(info.value, TokenRefreshLimited)


@pytest.mark.parametrize("status", [200, 400])
@responses.activate
def test_refresh_throttled_either_status(clock: FakeClock, status: int) -> None:
    responses.post(
        TOKEN_URL, status=status, json={
            "error": "Access Denied", "status": "failure",
            "error_description": "You have made too many requests continuously. "
                                 "Please try again after some time."
        })
    with pytest.raises(TokenRefreshLimited, match="too many token requests"):
        make_auth(clock).access_token()


@responses.activate
def test_local_refresh_guard(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json=token_body(expires_in=1))
    auth = make_auth(clock)
    for _ in range(10):
        auth.access_token()
        clock.advance(2)
    with pytest.raises(TokenRefreshLimited, match="10 refreshes"):
        auth.access_token()
    assert len(responses.calls) == 10
    clock.advance(600)
    auth.access_token()


@responses.activate
def test_a_short_lived_token_is_used_for_most_of_its_life(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json=token_body(expires_in=3))
    auth = make_auth(clock)
    for _ in range(5):  # 0.5 s between calls: a 3 s token serves every call until 0.3 s before it expires
        auth.access_token()
        clock.advance(0.5)
    assert len(responses.calls) == 1
    clock.advance(0.3)  # 0.2 s left of its 3 s
    auth.access_token()
    assert len(responses.calls) == 2


@responses.activate
def test_refresh_limit_message_keeps_its_numbers_and_says_when(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json=token_body(expires_in=3))
    auth = make_auth(clock)
    first = clock.seconds()
    for _ in range(10):
        auth.access_token()
        clock.advance(3)
    with pytest.raises(TokenRefreshLimited) as info:
        auth.access_token()
    shown = redact.text(str(info.value))  # what logs, run reports and the CLI print
    assert ("10 refreshes in the last 600 s already, the most Zoho allows per refresh token "
            "(10 per 10 minutes); its tokens live only 3 s; the next refresh is possible at "
            "2026-01-01 00:10:00 UTC" in shown)
    assert info.value.resume_at == datetime.fromtimestamp(first + 600, timezone.utc)
    clock.set(first + 600)  # at the resume time the oldest refresh has left the window
    auth.access_token()


@responses.activate
def test_token_endpoint_down_is_retriable(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(CrmConnectionError):
        make_auth(clock).access_token()


def test_single_flight_across_threads(clock: FakeClock) -> None:
    calls: list[int] = []

    def slow_token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        calls.append(1)
        time.sleep(0.05)  # hold the refresh open so the other threads pile up on the lock
        import json
        return 200, {}, json.dumps(token_body())

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
        auth = make_auth(clock)
        tokens: list[str] = []
        threads = [threading.Thread(target=lambda: tokens.append(auth.access_token())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(calls) == 1 and len(set(tokens)) == 1 and len(tokens) == 8


@responses.activate
def test_invalidate_keeps_newer_token(clock: FakeClock) -> None:
    responses.post(TOKEN_URL, json=token_body("1000.aaaa1111bbbb2222cccc.dddd3333eeee4444ffff"))
    responses.post(TOKEN_URL, json=token_body("1000.9999888877776666aaaa.bbbbccccddddeeeeffff"))
    auth = make_auth(clock)
    old = auth.access_token()
    auth.invalidate(old)
    new = auth.access_token()
    assert new != old
    auth.invalidate(old)  # a late thread reporting the old token must not throw away the new one
    assert auth.access_token() == new and len(responses.calls) == 2
