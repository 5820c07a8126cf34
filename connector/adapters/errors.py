"""Typed CRM errors shared by every vendor client.

Branches say what the caller can do: retry later (`RetriableCrmError`, `retriable` True), stop the
whole run at once because no later call of it can succeed (`connector.errors.ResumeLater`: the daily
allowance used up, the token-refresh limit reached, credentials refused), fix credentials
(`AuthError`), or record the bad item and go on (`CrmRequestError`). Every other class is fatal:
the same request cannot succeed. Messages and details are redacted before they are built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connector.errors import ConnectorError, ResumeLater


class CrmError(ConnectorError):
    """An error answered by (or on the way to) a CRM API."""

    def __init__(self, message: str, *, crm: str = "", status: int | None = None, code: str = "",
                 details: Any = None, request: str = "", trace_id: str | None = None) -> None:
        super().__init__(message)
        self.crm = crm
        self.status = status
        self.code = code
        self.details = details
        self.request = request
        self.trace_id = trace_id

    def __str__(self) -> str:
        parts = [f"{self.crm} " if self.crm else "", f"{self.code}: " if self.code else "", self.message]
        if self.status is not None:
            parts.append(f" (HTTP {self.status})")
        if self.request:
            parts.append(f" [{self.request}]")
        if self.trace_id:
            parts.append(f" traceId={self.trace_id}")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(crm={self.crm!r}, status={self.status!r}, code={self.code!r}, " \
               f"message={self.message!r}, trace_id={self.trace_id!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, already redacted."""
        return {"error": type(self).__name__, "crm": self.crm, "status": self.status, "code": self.code,
                "message": self.message, "request": self.request, "trace_id": self.trace_id}


class RetriableCrmError(CrmError):
    """Transient: throttling, server errors, timeouts, connection failures. A retry may succeed."""

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(RetriableCrmError):
    """Too many requests or concurrent calls; slow down."""


class ServerError(RetriableCrmError):
    """The CRM failed (5xx or an internal error code)."""


class CrmConnectionError(RetriableCrmError):
    """The request never got an answer (DNS, refused, reset, timeout). `never_sent`: the connection was
    not even made, so nothing reached the CRM and even a call that is not idempotent may be repeated."""

    def __init__(self, message: str, *, never_sent: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.never_sent = never_sent


class FatalCrmError(CrmError):
    """Retrying the same request cannot help."""


class AuthError(FatalCrmError):
    """Credentials are wrong, revoked or lack a scope."""


class TokenRefreshLimited(ResumeLater, AuthError):
    """The token endpoint refused (or our guard refused to ask it) because tokens were requested too often."""

    summary = "no new access token can be had for now"


class CredentialsRejected(ResumeLater, AuthError):
    """The CRM refuses the connection's credentials (revoked or invalid grant, wrong secret, app disabled)."""

    run_status = "failed"
    summary = "the CRM refused the connection's credentials"


class PermissionDenied(FatalCrmError):
    """Authenticated, but not allowed to do this."""


class QuotaExhausted(ResumeLater, FatalCrmError):
    """The day's API allowance is used up; the run stops and resumes after `resume_at`.

    The one error for both allowances: the CRM's own daily quota/credits (`crm` set) and the
    connection's local daily budget (`connector.sync.budget`, `crm` empty), which refuses a call
    before it is sent."""

    run_status = "budget"
    summary = "the CRM's daily API allowance is used up"


class CrmRequestError(FatalCrmError):
    """The request is invalid (bad field, bad value, missing mandatory field, limit exceeded)."""


class CrmNotFound(CrmRequestError):
    """The module, object or record does not exist."""


class UnexpectedAnswer(FatalCrmError):
    """The CRM answered something this client cannot use (an unexpected status, a result list that does not
    match the request, a page cap passed without a way on); trying the same request again will not help."""
