"""Fxiaoke corp access token: fetched from appId/appSecret/permanentCode, cached, refreshed by one thread.

The token endpoint allows about 10 calls a minute and must not be called concurrently, so every
thread shares one cached token and at most one of them asks for a new one. A token is replaced when
it is within its refresh margin of its stated lifetime (`margin` seconds at most, a tenth of a short
lifetime), or when a call answers 20016 (expired).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from pydantic import SecretStr

from connector.adapters.errors import AuthError, CrmConnectionError, ServerError, TokenRefreshLimited
from connector.adapters.fxiaoke.envelope import CRM, error_for
from connector.adapters.http import connection_failure, refresh_margin
from connector.errors import ConfigError

log = logging.getLogger("connector.fxiaoke.auth")

TOKEN_PATH = "/cgi/corpAccessToken/get/V2"
DEFAULT_ENV = {"app_id": "FXIAOKE_APP_ID", "app_secret": "FXIAOKE_APP_SECRET",
               "permanent_code": "FXIAOKE_PERMANENT_CODE"}


@dataclass(frozen=True)
class FxiaokeCredentials:
    """The app's credentials; the secret parts are `SecretStr` (plain strings given are wrapped)."""

    app_id: str
    app_secret: SecretStr
    permanent_code: SecretStr
    env_names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV), compare=False)

    def __post_init__(self) -> None:
        for name in ("app_secret", "permanent_code"):
            value = getattr(self, name)
            if not isinstance(value, SecretStr):
                object.__setattr__(self, name, SecretStr(str(value)))

    def secrets(self) -> tuple[str, ...]:
        """Values to mask in any text that leaves the process."""
        return (self.app_secret.get_secret_value(), self.permanent_code.get_secret_value())

    @classmethod
    def from_env(cls, names: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> FxiaokeCredentials:
        """Read credentials from the environment variables whose names the config gives."""
        names = {**DEFAULT_ENV, **(names or {})}
        env = os.environ if environ is None else environ
        missing = [names[k] for k in ("app_id", "app_secret", "permanent_code") if not env.get(names[k])]
        if missing:
            raise ConfigError(f"fxiaoke credentials: environment variable(s) {', '.join(missing)} not set",
                              field="fxiaoke.credentials")
        return cls(app_id=env[names["app_id"]], app_secret=SecretStr(env[names["app_secret"]]),
                   permanent_code=SecretStr(env[names["permanent_code"]]), env_names=names)


@dataclass(frozen=True)
class CorpToken:
    """A corp access token with the monotonic time it stops being used."""

    value: str = field(repr=False)
    corp_id: str
    expires_at: float


class FxiaokeAuth:
    """Hands out a valid corp access token; thread-safe and single-flight."""

    def __init__(self, base_url: str, credentials: FxiaokeCredentials, *,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 margin: float = 300.0, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.session = session or requests.Session()
        self._clock = clock
        self._wall_clock = wall_clock
        self._margin = margin
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: CorpToken | None = None
        self.token_calls = 0

    def __repr__(self) -> str:
        return f"FxiaokeAuth(base_url={self.base_url!r}, app_id={self._credentials.app_id!r})"

    def secrets(self) -> tuple[str, ...]:
        """Values that must be masked wherever they could appear."""
        values = list(self._credentials.secrets())
        if self._token is not None:
            values.append(self._token.value)
        return tuple(values)

    def token(self) -> CorpToken:
        """The cached token, or a new one if it is missing or about to expire."""
        with self._lock:
            current = self._token
            if current is not None and self._clock() < current.expires_at:
                return current
            self._token = self._fetch()
            return self._token

    def invalidate(self, stale: CorpToken) -> None:
        """Forget `stale` (the server said it expired), unless another thread already replaced it."""
        with self._lock:
            if self._token is not None and self._token.value == stale.value:
                self._token = None

    def _fetch(self) -> CorpToken:
        creds = self._credentials
        body = {"appId": creds.app_id, "appSecret": creds.app_secret.get_secret_value(),
                "permanentCode": creds.permanent_code.get_secret_value()}
        url = f"{self.base_url}{TOKEN_PATH}"
        self.token_calls += 1
        started = self._clock()
        try:
            response = self.session.post(url, params={"thirdTraceId": str(uuid.uuid4())}, json=body,
                                          timeout=self._timeout)
        except requests.RequestException as exc:
            raise CrmConnectionError(
                f"cannot reach the Fxiaoke token endpoint: {connection_failure(exc, url)}", crm=CRM,
                request=f"POST {TOKEN_PATH}") from None
        if response.status_code != 200:
            raise ServerError(f"token endpoint answered HTTP {response.status_code}", crm=CRM,
                              status=response.status_code, request=f"POST {TOKEN_PATH}")
        try:
            payload: dict[str, Any] = response.json()
        except ValueError:
            raise ServerError("token endpoint answered a body that is not JSON", crm=CRM, status=200,
                              request=f"POST {TOKEN_PATH}") from None
        error = error_for(payload, request=f"POST {TOKEN_PATH}", now=self._wall_clock(), token_call=True,
                          secrets=self.secrets())
        if isinstance(error, AuthError) and not isinstance(error, TokenRefreshLimited):
            # Name the environment variable to fix: 20006 appId/appSecret, 10006 appSecret,
            # 20015 permanentCode.
            wrong = {20006: ("app_id", "app_secret"), 10006: ("app_secret",), 20015: ("permanent_code",)}.get(
                int(error.code) if error.code.lstrip("-").isdigit() else 0, tuple(DEFAULT_ENV))
            names = " and ".join(creds.env_names.get(k, DEFAULT_ENV[k]) for k in wrong)
            error.message += f"; check {names} in the environment or the .env beside the config"
        if error is not None:
            raise error
        value = payload.get("corpAccessToken")
        if not value:
            raise ServerError("token response has no corpAccessToken", crm=CRM, status=200,
                              request=f"POST {TOKEN_PATH}", trace_id=payload.get("traceId"))
        lifetime = float(payload.get("expiresIn") or 0)
        # expiresIn is the remaining lifetime; refresh early by the shared rule (`margin` seconds at most,
        # a tenth of a short lifetime), measured from when the request left.
        expires_at = started + lifetime - refresh_margin(lifetime, self._margin)
        log.info("fxiaoke corp access token obtained (valid %.0fs)", lifetime)
        return CorpToken(value=str(value), corp_id=str(payload.get("corpId") or ""), expires_at=expires_at)
