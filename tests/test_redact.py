"""`connector.redact`: the one sanitizer. Secrets go, evidence stays, long text is cut."""

from __future__ import annotations

from typing import Any

import pytest

from connector import redact

ZOHO_TOKEN = "1000.0123456789abcdef0123.fedcba9876543210fedc"


@pytest.mark.parametrize(
    "name",
    [
        "access_token",
        "Refresh_Token",
        "client-secret",
        "X-Api-Key",
        "Authorization",
        "Cookie",
        "set-cookie",
        "corpAccessToken",
        "permanentCode",
        "appSecret",
        "PASSWORD",
    ],
)
def test_secret_names_in_any_case_or_separator(name: str) -> None:
    assert redact.is_secret_name(name)


@pytest.mark.parametrize("name", ["tokens", "token_type", "api_domain", "expires_in", "name", "Content-Type"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not redact.is_secret_name(name)


@pytest.mark.parametrize(
    "raw,want",
    [
        ("ZOHO_CLIENT_SECRET=abcd1234 and more", "ZOHO_CLIENT_SECRET=*** and more"),
        ('{"access_token": "tok123", "name": "ok"}', '{"access_token": "***", "name": "ok"}'),
        ("Authorization: Zoho-oauthtoken 1000.aaa.bbb", "Authorization: Zoho-oauthtoken ***"),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ("header basic dXNlcjpwYXNz", "header basic ***"),
        (
            "grant_type=refresh_token&refresh_token=r1&client_id=c",
            "grant_type=refresh_token&refresh_token=***&client_id=c",
        ),
        (f"the token {ZOHO_TOKEN} expired", "the token *** expired"),
        ("'x-api-key': k-123, next", "'x-api-key': ***, next"),
    ],
)
def test_text_masks_credentials_and_keeps_the_rest(raw: str, want: str) -> None:
    assert redact.text(raw) == want


@pytest.mark.parametrize(
    "raw",
    [
        "invalid_client_secret: Zoho token refresh failed",
        "INVALID_TOKEN: invalid oauth token",
        "expired_token: ask again",
        "the token was refused",
        "page=2&per_page=200",
    ],
)
def test_vendor_error_codes_and_plain_words_stay(raw: str) -> None:
    assert redact.text(raw) == raw


def test_a_python_repr_of_a_dict_is_masked_too() -> None:
    # Was a leak: a dict put into a message with str()/repr() quotes its keys with ', not ".
    got = redact.text(str({"access_token": "abc123", "client_secret": "zzz9", "page": 2}))
    assert got == "{'access_token': '***', 'client_secret': '***', 'page': 2}"


def test_known_secret_values_are_masked_wherever_they_appear_if_long_enough() -> None:
    got = redact.text("hunter22 said abc then hunter22", extra_secrets=("hunter22", "abc", ""))
    assert got == "*** said abc then ***"  # values under 4 characters would mask ordinary words


def test_long_text_is_cut_and_says_how_much_was_left_out() -> None:
    got = redact.text("x" * (redact.MAX_BODY + 123))
    assert got == "x" * redact.MAX_BODY + "... [123 more chars]"
    assert redact.text("y" * redact.MAX_BODY) == "y" * redact.MAX_BODY


def test_the_cut_happens_after_masking_so_a_secret_at_the_edge_cannot_leak_in_part() -> None:
    raw = "a" * (redact.MAX_BODY - 10) + " password=supersecretvalue"
    got = redact.text(raw)
    assert "supersecret" not in got and "supersecr" not in got


def test_url_masks_secret_query_parameters_only() -> None:
    got = redact.url("https://h.test/p?access_token=abc&page=2&client_secret=s&q=a%20b")
    assert got == "https://h.test/p?access_token=***&page=2&client_secret=***&q=a+b"
    assert redact.url("https://h.test/p") == "https://h.test/p"
    assert redact.url("https://h.test/p?flag") == "https://h.test/p?flag="


def test_headers_masks_by_name_and_returns_a_copy() -> None:
    original = {"Authorization": "Bearer x", "Content-Type": "application/json", "X-Api-Key": "k"}
    got = redact.headers(original)
    assert got == {"Authorization": "***", "Content-Type": "application/json", "X-Api-Key": "***"}
    assert original["Authorization"] == "Bearer x"


def test_data_masks_nested_keys_and_free_text_and_keeps_other_types() -> None:
    value: dict[str, Any] = {
        "a": [{"Password": "p", "note": "Bearer zzz"}, 3, None],
        "Token": 1,
        "nested": {"refresh_token": {"deep": "x"}},
        "amount": 12.5,
        7: "seven",
    }
    assert redact.data(value) == {
        "a": [{"Password": "***", "note": "Bearer ***"}, 3, None],
        "Token": "***",
        "nested": {"refresh_token": "***"},
        "amount": 12.5,
        7: "seven",
    }


@pytest.mark.parametrize("raw", ['{"errorCode": 20016, "errorMessage": "token invalid"}', "errcode=130101",
                                 '{"code": "INVALID_TOKEN", "status": "error"}'])
def test_vendor_error_code_fields_keep_their_values(raw: str) -> None:
    assert redact.text(raw) == raw
    assert redact.data({"errorCode": 20016,
                        "code": "INVALID_TOKEN"}) == {"errorCode": 20016, "code": "INVALID_TOKEN"}


def test_the_oauth_grant_code_in_a_query_string_is_masked() -> None:
    masked = redact.url("https://accounts.zoho.com/oauth/v2/token?grant_type=authorization_code&code=abc123XYZ")
    assert "abc123XYZ" not in masked and "grant_type=authorization_code" in masked
    assert redact.text(
        "grant_type=authorization_code&code=abc123XYZ") == "grant_type=authorization_code&code=***"
    assert "1000.0123456789abcdef0123.0123456789abcdef01" not in redact.text(
        "code=1000.0123456789abcdef0123.0123456789abcdef01")
