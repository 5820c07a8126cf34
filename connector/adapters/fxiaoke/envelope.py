"""Fxiaoke answers HTTP 200 for almost everything; the body's `errorCode` decides.

One table maps vendor codes to our typed errors (`connector.adapters.errors`). Anything not in
the table is a `CrmRequestError`: retrying an unknown failure blindly is worse than stopping.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from connector import redact
from connector.adapters.errors import (
    AuthError,
    CredentialsRejected,
    CrmError,
    CrmRequestError,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    ServerError,
    TokenRefreshLimited,
)
from connector.timeutil import next_midnight

CRM = "fxiaoke"
TOKEN_EXPIRED = 20016
THROTTLE_CODES = frozenset({14001, 30004})
DAILY_QUOTA = 30002
NO_QUOTA = 30003
# Tenant dates and the daily quota reset are China time (GMT+8).
CHINA_TZ = timezone(timedelta(hours=8), "GMT+8")

# errorCode -> error class. Ranges from the vendor's global code table are expanded below.
ERROR_TABLE: dict[int, type[CrmError]] = {
    -2: ServerError, -1: ServerError, 50009: ServerError,
    14001: RateLimited, 30004: RateLimited,
    30002: QuotaExhausted, 30003: QuotaExhausted,
    20005: AuthError, 20006: AuthError, 20010: AuthError, 20015: AuthError, 20016: AuthError,
    20017: AuthError, 11014: AuthError, 11013: AuthError, 11001: AuthError, 11002: AuthError,
    20012: AuthError, 30027: AuthError,
    15003: PermissionDenied, 20014: PermissionDenied, 20020: PermissionDenied, 20021: PermissionDenied,
    20022: PermissionDenied, 20023: PermissionDenied,
}

# Codes the token endpoint uses for "asked too often" are not documented; treat throttling there as
# a refresh limit, which stops the run instead of hammering the endpoint. Any other refusal of the token
# request means no call of the run can succeed: the credentials are rejected and the run stops once.
TOKEN_WINDOW = timedelta(minutes=1)  # the token endpoint allows about 10 calls a minute
TOKEN_ERROR_TABLE: dict[int, type[CrmError]] = {
    **ERROR_TABLE, **{
        code: CredentialsRejected
        for code, cls in ERROR_TABLE.items() if cls in (AuthError, PermissionDenied)
    }, 14001: TokenRefreshLimited, 30004: TokenRefreshLimited, 10006: CredentialsRejected,
    11013: CredentialsRejected, 10011: CredentialsRejected
}


def next_quota_reset(now: datetime) -> datetime:
    """The next 00:00 China time after `now`, when the daily quota is counted afresh."""
    return next_midnight(now, CHINA_TZ)


def error_for(body: Mapping[str, Any], *, request: str, now: datetime, token_call: bool = False,
              secrets: tuple[str, ...] = ()) -> CrmError | None:
    """The typed error an envelope stands for, or None when `errorCode` is 0."""
    raw_code = body.get("errorCode")
    try:
        code = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError):
        code = None
    if code == 0:
        return None
    message = str(body.get("errorMessage") or body.get("error_description") or "no errorMessage")
    description = body.get("errorDescription")
    if description and description != message and description not in ("success",):
        message = f"{message} ({description})"
    message = redact.text(message, secrets)
    trace_id = body.get("traceId")
    table = TOKEN_ERROR_TABLE if token_call else ERROR_TABLE
    if code is None:
        return ServerError(f"response has no usable errorCode ({raw_code!r})", crm=CRM, status=200,
                           code=str(raw_code), request=request, trace_id=trace_id)
    cls = table.get(code, CrmRequestError)
    if token_call and cls is CrmRequestError:
        cls = CredentialsRejected
    kw: dict[str, Any] = {"crm": CRM, "status": 200, "code": str(code), "request": request,
                          "trace_id": str(trace_id) if trace_id else None}
    if cls is QuotaExhausted:
        resume = next_quota_reset(now) if code == DAILY_QUOTA else None
        return QuotaExhausted(message, resume_at=resume, **kw)
    if cls is TokenRefreshLimited:
        return TokenRefreshLimited(message, resume_at=now + TOKEN_WINDOW, **kw)
    return cls(message, **kw)  # any other ResumeLater (refused credentials) does not clear by itself
