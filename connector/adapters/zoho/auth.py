"""Zoho OAuth 2.0: refresh-token grant, cached access token, early and single-flight refresh.

Secrets come from environment variables whose *names* are configured, never from the config
itself. The access token is shared by every thread of a client; only one thread refreshes at a
time, and a local guard keeps us under Zoho's "10 access tokens per refresh token per 10 minutes".
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from pydantic import SecretStr

from connector import redact
from connector.adapters.errors import (
    CredentialsRejected,
    CrmConnectionError,
    ServerError,
    TokenRefreshLimited,
)
from connector.adapters.http import connection_failure, refresh_margin
from connector.errors import ConfigError

log = logging.getLogger("connector.zoho.auth")

# Data centre -> (accounts server, API domain). CA's accounts server is zohocloud.ca, not zoho.ca.
DATA_CENTERS: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}
TOKEN_PATH = "/oauth/v2/token"
# Zoho allows 10 access tokens per refresh token per 10 minutes; stay just under it.
REFRESH_LIMIT = 10
REFRESH_WINDOW = 600.0
_THROTTLE_HINTS = ("too many requests", "access denied")


@dataclass(frozen=True)
class ZohoAuthConfig:
    """Where to authenticate and which environment variables hold the secrets."""

    data_center: str = "us"
    accounts_url: str | None = None
    api_domain: str | None = None
    client_id_env: str = "ZOHO_CLIENT_ID"
    client_secret_env: str = "ZOHO_CLIENT_SECRET"
    refresh_token_env: str = "ZOHO_REFRESH_TOKEN"
    refresh_margin: float = 300.0  # at most; a short-lived token is replaced 10% of its lifetime early
    timeout: tuple[float, float] = (5.0, 30.0)

    def token_url(self) -> str:
        """The token endpoint of the configured accounts server."""
        base = self.accounts_url or self._dc()[0]
        base = base.rstrip("/")
        return base if base.endswith(TOKEN_PATH) else base + TOKEN_PATH

    def default_api_domain(self) -> str:
        """API domain to use until a token response names one."""
        return (self.api_domain or self._dc()[1]).rstrip("/")

    def _dc(self) -> tuple[str, str]:
        key = self.data_center.lower()
        if key not in DATA_CENTERS:
            raise ConfigError(f"zoho data_center {self.data_center!r} is unknown; use one of "
                              f"{', '.join(DATA_CENTERS)} or set accounts_url and api_domain",
                              field="data_center")
        return DATA_CENTERS[key]


@dataclass(frozen=True)
class ZohoCredentials:
    """Client id, client secret and refresh token; the secrets never appear in a repr."""

    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr

    @classmethod
    def from_env(cls, config: ZohoAuthConfig, environ: Mapping[str, str] | None = None) -> ZohoCredentials:
        """Read the three values from the environment variables the config names."""
        env = os.environ if environ is None else environ
        names = (config.client_id_env, config.client_secret_env, config.refresh_token_env)
        missing = [name for name in names if not env.get(name)]
        if missing:
            raise ConfigError(f"zoho credentials missing: set environment variable(s) {', '.join(missing)}",
                              field="credentials")
        return cls(env[names[0]], SecretStr(env[names[1]]), SecretStr(env[names[2]]))

    def secrets(self) -> tuple[str, ...]:
        """Values to mask in any text that leaves the process."""
        return (self.client_secret.get_secret_value(), self.refresh_token.get_secret_value())


@dataclass
class _Token:
    value: str
    expires_at: float
    api_domain: str
    margin: float = 0.0  # replaced this many seconds before `expires_at`


@dataclass
class ZohoAuth:
    """Hands out a valid access token and refreshes it early, once at a time across threads."""

    config: ZohoAuthConfig
    credentials: ZohoCredentials
    session: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], float] = time.time
    refreshes: int = 0
    _token: _Token | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recent: deque[float] = field(default_factory=deque, repr=False)
    _lifetime: float | None = field(default=None, repr=False)  # of the last token issued

    @classmethod
    def from_env(cls, config: ZohoAuthConfig, *, session: requests.Session | None = None,
                 environ: Mapping[str, str] | None = None) -> ZohoAuth:
        """Build from a config whose secrets live in environment variables."""
        return cls(config, ZohoCredentials.from_env(config, environ), session=session or requests.Session())

    @property
    def api_domain(self) -> str:
        """The API domain of the current token (as Zoho returned it), else the configured one."""
        token = self._token
        return token.api_domain if token else self.config.default_api_domain()

    def access_token(self) -> str:
        """A token with more than its refresh margin to live, refreshing if needed."""
        token = self._token
        if token is not None and token.expires_at - self.clock() > token.margin:
            return token.value
        with self._lock:
            token = self._token  # another thread may have refreshed while we waited
            if token is None or token.expires_at - self.clock() <= token.margin:
                token = self._refresh()
            return token.value

    def invalidate(self, rejected: str) -> None:
        """Forget `rejected` after Zoho answered INVALID_TOKEN; a newer token is kept."""
        with self._lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None

    def secrets(self) -> tuple[str, ...]:
        """Every secret this auth knows, for redaction (current access token included)."""
        extra = (self._token.value,) if self._token else ()
        return self.credentials.secrets() + extra

    def _refresh(self) -> _Token:
        now = self.clock()
        while self._recent and now - self._recent[0] >= REFRESH_WINDOW:  # out of the window at `resume_at`
            self._recent.popleft()
        if len(self._recent) >= REFRESH_LIMIT:
            # Worded so that no number follows "token": the redactor masks what follows "token:".
            resume = datetime.fromtimestamp(self._recent[0] + REFRESH_WINDOW, timezone.utc)
            lived = f"; its tokens live only {self._lifetime:g} s" if self._lifetime is not None else ""
            raise TokenRefreshLimited(
                f"Zoho access token not refreshed: {len(self._recent)} refreshes in the last "
                f"{REFRESH_WINDOW:g} s already, the most Zoho allows per refresh token ({REFRESH_LIMIT} per "
                f"{REFRESH_WINDOW / 60:g} minutes){lived}; the next refresh is possible at "
                f"{resume:%Y-%m-%d %H:%M:%S} UTC", crm="zoho", code="LOCAL_REFRESH_LIMIT",
                request=f"POST {self.config.token_url()}", resume_at=resume)
        self._recent.append(now)
        self.refreshes += 1
        url = self.config.token_url()
        form = {"grant_type": "refresh_token", "client_id": self.credentials.client_id,
                "client_secret": self.credentials.client_secret.get_secret_value(),
                "refresh_token": self.credentials.refresh_token.get_secret_value()}
        described = f"POST {url}"
        try:
            resp = self.session.post(url, data=form, timeout=self.config.timeout)
        except requests.RequestException as exc:
            raise CrmConnectionError(f"cannot reach the Zoho token endpoint: {connection_failure(exc, url)}",
                                     crm="zoho", request=described) from None
        body = self._json(resp)
        if resp.status_code >= 500:
            raise ServerError("token endpoint failed", crm="zoho", status=resp.status_code,
                              details=redact.data(body), request=described)
        if not isinstance(body, dict) or "access_token" not in body:
            raise self._token_error(resp.status_code, body, described)
        expires_in = float(body.get("expires_in", 3600))
        if "expires_in_sec" in body:  # old shape: expires_in in milliseconds
            expires_in = float(body["expires_in_sec"])
        domain = str(body.get("api_domain") or self.config.default_api_domain()).rstrip("/")
        self._lifetime = expires_in
        self._token = _Token(str(body["access_token"]), now + expires_in, domain,
                             refresh_margin(expires_in, self.config.refresh_margin))
        log.info("zoho access token refreshed (valid %ds, api_domain %s)", int(expires_in), domain)
        return self._token

    def _token_error(self, status: int, body: Any,
                     described: str) -> TokenRefreshLimited | CredentialsRejected:
        body = body if isinstance(body, dict) else {"body": str(body)[:200]}
        error = str(body.get("error", "")).strip()
        description = str(body.get("error_description", ""))
        safe = redact.data(body)
        text = f"{error} {description}".lower()
        if any(hint in text for hint in _THROTTLE_HINTS):
            # Zoho says neither how long to wait nor how many it counted: try again once our window has
            # passed.
            return TokenRefreshLimited(
                "Zoho refused to issue an access token: too many token requests; wait a few minutes "
                "and share one token across workers", crm="zoho", status=status, code=error or
                "Access Denied", details=safe, request=described,
                resume_at=datetime.fromtimestamp(self.clock() + REFRESH_WINDOW, timezone.utc))
        cfg, where = self.config, "in the environment or the .env beside the config"
        hint = {
            "invalid_code": f"the refresh token in {cfg.refresh_token_env} is invalid or revoked; "
            f"generate a new one and set it {where}",
            "invalid_client": f"the client id in {cfg.client_id_env} is unknown in this data centre; "
            f"check it {where}, and data_center in the config",
            "invalid_client_secret": f"the client secret in {cfg.client_secret_env} is wrong; "
            f"set the right one {where}"
        }.get(error, "token request rejected")
        # Without a token no call of the run can succeed, whatever the reason: stop the run once.
        return CredentialsRejected(f"Zoho token refresh failed: {hint}", crm="zoho", status=status,
                                   code=error or "NO_ACCESS_TOKEN", details=safe, request=described)

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except (ValueError, json.JSONDecodeError):
            return {"body": redact.text(resp.text[:200])}
