"""Transport-free sandbox app: OAuth, auth checks, credits, concurrency, faults, then routing.

`SandboxApp.handle` takes a method, path, query, headers and body and returns a `Reply`; the HTTP
server and the in-process `requests` transport both call it, so they behave identically.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from connector.adapters.sandbox_http import INFO_PATH
from connector.adapters.zoho.wire import encode
from connector.adapters.zoho.sandbox.delivery import Deliveries
from connector.adapters.zoho.sandbox.handlers import ApiError, RecordHandlers
from connector.adapters.zoho.sandbox.store import Org
from connector.adapters.zoho.sandbox.versions import split_path
from connector.adapters.zoho.sandbox.watch import WatchHandlers

log = logging.getLogger("connector.zoho.sandbox")

# Fixed, obviously fake sandbox credentials (never real Zoho values).
SANDBOX_CLIENT_ID = "1000.SANDBOX0CLIENT0ID0PREPAIDSYNC"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret-not-real"
SANDBOX_REFRESH_TOKEN = "sandbox-refresh-token-not-real"
MAX_ACTIVE_TOKENS = 15
REFRESH_WINDOW = 600
ROLLING_DAY = 86400
SUB_CONCURRENCY = 10
GRANT_TOKEN_TTL = 180  # a grant token (authorization code) is valid 3 minutes and usable once


@dataclass
class SandboxConfig:
    """Knobs of one sandbox instance."""

    seed: int = 0
    latency_ms: int = 0
    fail_rate: float = 0.0
    token_ttl: int = 3600
    daily_credits: int | None = None
    concurrency: int | None = None
    refresh_limit: int = 10
    search_lag_seconds: int = 2
    fault_seed: int = 7
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    refresh_token: str = SANDBOX_REFRESH_TOKEN
    clock_offset: float = 0.0  # seconds the org's clock runs ahead of (negative: behind) the machine's


@dataclass
class Reply:
    """What the sandbox answers: status, headers, body bytes; `drop` closes the connection instead."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON reply with Zoho's content type."""
    out = {"Content-Type": "application/json;charset=utf-8", **(headers or {})}
    return Reply(status, out, encode(payload).encode())


class SandboxApp:
    """Emulates Zoho's accounts server and CRM v8 API for one org."""

    def __init__(self, config: SandboxConfig | None = None, org: Org | None = None,
                 base_url: str = "") -> None:
        self.config = config or SandboxConfig()
        self.org = org or Org()
        self.base_url = base_url
        self.records = RecordHandlers(self.org, search_lag=self.config.search_lag_seconds)
        # The Notifications API: channels (`watch`) and the worker that POSTs to their URLs (`deliveries`).
        self.deliveries = Deliveries(self.org, lambda module: self.watch.resource_uri(module))
        self.watch = WatchHandlers(self.org, lambda: self.base_url, self.deliveries.publish)
        self.deliveries.watch = self.records.watch = self.watch
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._refreshes: deque[float] = deque()
        self._grants: dict[str, float] = {}
        self._credits: deque[tuple[float, int]] = deque()
        self._in_flight = 0
        self._heavy_in_flight = 0
        self._faults = random.Random(self.config.fault_seed)
        self.stats: dict[str, int] = {"requests": 0, "api_calls": 0, "token_calls": 0, "faults": 0,
                                      "throttled": 0}

    # -- entry point ----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one HTTP request."""
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.stats["requests"] += 1
        if path.rstrip("/").endswith("/oauth/v2/token"):
            return self._token(params, lower, body)
        if path == INFO_PATH and method == "GET":
            return json_reply(
                200, {
                    "sandbox": "zoho", "api_domain": self.base_url, "accounts_url": self.base_url,
                    "client_id": self.config.client_id, "client_secret": self.config.client_secret,
                    "refresh_token": self.config.refresh_token
                })
        served = split_path(path)
        if served is None:
            return json_reply(404, {"code": "INVALID_URL_PATTERN", "details": {},
                                    "message": "Please check if the URL trying to access is a correct one",
                                    "status": "error"})
        version, rest = served
        auth = self._check_auth(lower)
        if auth is not None:
            return auth
        fault = self._fault(before=True)
        if fault is not None:
            return fault
        heavy = self._is_heavy(method, path, params, body)
        throttled = self._enter(heavy)
        if throttled is not None:
            return throttled
        try:
            if self.config.latency_ms:
                time.sleep(self.config.latency_ms / 1000)  # inside the in-flight window, like real work
            with self._lock:
                self.stats["api_calls"] += 1
            try:
                payload = json.loads(body, parse_float=Decimal) if body else None
            except ValueError:
                return json_reply(
                    400, {
                        "code": "INVALID_DATA", "details": {}, "message": "body is not a valid JSON",
                        "status": "error"
                    })
            cost = self.records.credits(method, rest, params, payload)
            over = self._charge(cost)
            if over is not None:
                return over
            try:
                with self.deliveries.batch(), self.org.lock:
                    status, out = self.records.route(method, rest, params, lower, payload, version)
            except ApiError as exc:
                status, out = exc.status, exc.body
            extra = self._credit_headers()
            if self._fault(before=False) is not None and method in ("POST", "PUT"):
                # The work is done but the answer is lost: the client sees a 500.
                return json_reply(
                    500, {
                        "code": "INTERNAL_ERROR", "details": {}, "message": "Internal Server Error",
                        "status": "error"
                    })
            if out is None:
                return Reply(status, extra)
            return json_reply(status, out, extra)
        finally:
            self._leave(heavy)

    # -- OAuth ----------------------------------------------------------------------------

    def _token(self, params: dict[str, str], headers: Mapping[str, str], body: bytes) -> Reply:
        with self._lock:
            self.stats["token_calls"] += 1
        form = dict(params)
        form.update(_form_fields(headers.get("content-type", ""), body))
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return json_reply(200, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.config.client_id:
            return json_reply(200, {"error": "invalid_client"})
        if form.get("client_secret") != self.config.client_secret:
            return json_reply(200, {"error": "invalid_client_secret"})
        if grant == "authorization_code":
            return self._exchange_grant(form.get("code", ""))
        if form.get("refresh_token") != self.config.refresh_token:
            return json_reply(200, {"error": "invalid_code"})
        now = self.org.clock()  # the org's clock, like token expiry (tests move it)
        with self._lock:
            while self._refreshes and now - self._refreshes[0] > REFRESH_WINDOW:
                self._refreshes.popleft()
            if len(self._refreshes) >= self.config.refresh_limit:
                return json_reply(
                    400, {
                        "error": "Access Denied", "status": "failure",
                        "error_description": "You have made too many requests continuously. "
                                             "Please try again after some time."
                    })
            self._refreshes.append(now)
            token = self._mint()
        return json_reply(200, self._token_body(token))

    def _exchange_grant(self, code: str) -> Reply:
        """The grant-token (authorization code) exchange: single use, 3 minutes, gives a refresh token too."""
        now = self.org.clock()
        with self._lock:
            expiry = self._grants.pop(code, None)
            if expiry is None or expiry <= now:
                return json_reply(200, {"error": "invalid_code"})
            token = self._mint()
        return json_reply(200, {**self._token_body(token), "refresh_token": self.config.refresh_token})

    def issue_grant_token(self) -> str:
        """A fresh grant token, as the consent screen or the self-client console would give one."""
        code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        with self._lock:
            self._grants[code] = self.org.clock() + GRANT_TOKEN_TTL
        return code

    def _mint(self) -> str:
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self._tokens[token] = self.org.clock() + self.config.token_ttl
        while len(self._tokens) > MAX_ACTIVE_TOKENS:  # the 16th token invalidates the oldest
            self._tokens.pop(next(iter(self._tokens)))
        return token

    def _token_body(self, token: str) -> dict[str, Any]:
        return {"access_token": token, "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.users.READ "
                "ZohoCRM.org.READ ZohoCRM.coql.READ", "api_domain": self.base_url, "token_type": "Bearer",
                "expires_in": self.config.token_ttl}

    def _check_auth(self, headers: Mapping[str, str]) -> Reply | None:
        value = headers.get("authorization", "")
        if not value.startswith("Zoho-oauthtoken "):
            return json_reply(401, {"code": "AUTHENTICATION_FAILURE", "details": {},
                                    "message": "Authentication failed", "status": "error"})
        token = value[len("Zoho-oauthtoken "):].strip()
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None or expiry <= self.org.clock():
            return json_reply(401, {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
                                    "status": "error"})
        return None

    def http_date(self) -> str:
        """The org's clock as an HTTP `Date` header (what every answer carries)."""
        return formatdate(self.org.clock(), usegmt=True)

    def expire_tokens(self) -> None:
        """Make every issued access token invalid (as if an hour had passed)."""
        with self._lock:
            self._tokens.clear()

    # -- limits and faults ----------------------------------------------------------------

    def _fault(self, before: bool) -> Reply | None:
        rate = self.config.fail_rate
        if rate <= 0:
            return None
        with self._lock:
            roll = self._faults.random()
            kind = self._faults.random()
        if roll >= (rate if before else rate / 3):
            return None
        with self._lock:
            self.stats["faults"] += 1
        if before and kind < 0.25:
            return Reply(0, drop=True)
        if before and kind < 0.4:
            return self._too_many()
        return json_reply(500, {"code": "INTERNAL_ERROR", "details": {}, "message": "Internal Server Error",
                                "status": "error"})

    @staticmethod
    def _is_heavy(method: str, path: str, params: Mapping[str, str], body: bytes) -> bool:
        if path.endswith("/coql"):
            return True
        if method == "GET" and ("sort_by" in params or "cvid" in params):
            return True
        return method in ("POST", "PUT") and body.count(b'"id"') + body.count(b"},{") > 10

    def _enter(self, heavy: bool) -> Reply | None:
        with self._lock:
            limit = self.config.concurrency
            if (limit is not None and self._in_flight >= limit) or (heavy and
                                                                    self._heavy_in_flight >= SUB_CONCURRENCY):
                self.stats["throttled"] += 1
                return self._too_many()
            self._in_flight += 1
            self._heavy_in_flight += int(heavy)
            return None

    def _leave(self, heavy: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            self._heavy_in_flight -= int(heavy)

    def _charge(self, cost: int) -> Reply | None:
        limit = self.config.daily_credits
        now = self.org.clock()
        with self._lock:
            while self._credits and now - self._credits[0][0] > ROLLING_DAY:
                self._credits.popleft()
            used = sum(c for _, c in self._credits)
            if limit is not None and used + cost > limit:
                self.stats["throttled"] += 1
                return self._too_many({"X-API-CREDITS-REMAINING": str(max(0, limit - used))})
            self._credits.append((now, cost))
        return None

    def credits_used(self) -> int:
        """Credits spent in the rolling 24-hour window."""
        with self._lock:
            return sum(c for _, c in self._credits)

    def _credit_headers(self) -> dict[str, str]:
        limit = self.config.daily_credits
        if limit is None:
            return {}
        used = self.credits_used()
        return {"X-API-CREDITS-REMAINING": str(limit - used)} if used * 2 >= limit else {}

    @staticmethod
    def _too_many(headers: Mapping[str, str] | None = None) -> Reply:
        return json_reply(
            429, {
                "code": "TOO_MANY_REQUESTS", "details": {}, "status": "error",
                "message": "Number of API requests for the 24 hour period is exceeded or the concurrency "
                "limit of the user for the app is exceeded"
            }, headers)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a token request body: `application/x-www-form-urlencoded` or `multipart/form-data`."""
    if not body:
        return {}
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                                      + b"\r\n\r\n" + body)
        out: dict[str, str] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                out[name] = payload.decode("utf-8", "replace")
        return out
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
