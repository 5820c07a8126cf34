"""Shared helpers for the Zoho tests (constants, a fake clock, sandbox clients, canned bodies)."""

from __future__ import annotations

from typing import Any

from connector.adapters.http import RetryPolicy
from connector.adapters.zoho.auth import ZohoAuth, ZohoAuthConfig
from connector.adapters.zoho.client import ZohoClient
from connector.adapters.zoho.sandbox import ZohoSandbox

from clock import Clock

API = "https://www.zohoapis.com"
ACCOUNTS = "https://accounts.zoho.com"
TOKEN_URL = f"{ACCOUNTS}/oauth/v2/token"
CLIENT_SECRET = "test-client-secret-value"
REFRESH_TOKEN = "1000.aaaabbbbccccdddd1111.eeeeffff00001111"
ACCESS_TOKEN = "1000.0123456789abcdef0123.fedcba9876543210fedc"


def token_body(access: str = ACCESS_TOKEN, expires_in: int = 3600, api_domain: str = API) -> dict[str, Any]:
    """A token endpoint success body."""
    return {
        "access_token": access, "api_domain": api_domain, "token_type": "Bearer", "expires_in": expires_in
    }


def error_body(code: str, message: str = "error", details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Zoho's flat error envelope."""
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


FakeClock = Clock  # the suite's one fake clock; Zoho's token cache and sandbox read `clock.seconds`
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, where the Zoho tests' clock starts


def sandbox_client(sb: ZohoSandbox, retry: RetryPolicy | None = None, **kwargs: Any) -> ZohoClient:
    """A client wired to a sandbox through environment-variable credentials."""
    config = ZohoAuthConfig(accounts_url=sb.accounts_url, api_domain=sb.api_domain)
    auth = ZohoAuth.from_env(config, environ=sb.env())
    return ZohoClient(auth, retry=retry or RetryPolicy(sleep=lambda s: None), **kwargs)
