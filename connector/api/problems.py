"""RFC 9457 problem details: one table from our error tree (and the API's own refusals) to HTTP.

Every error answer is `application/problem+json` with `type`, `title`, `status` and `detail`, plus
`field` when one input is to blame and `errors` (one per field) for a body that fails validation.
`type` is a stable relative URI, `/api/v1/problems/<slug>`; `GET` on it describes the problem. The
error class decides the type through `PROBLEMS`, the one mapping (most specific class first, by MRO).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from connector import redact
from connector.compliance import PrepaymentsStopped
from connector.errors import (ConnectorError, CurrencyMismatch, DatabaseUnavailable, IdempotencyConflict,
                              InsufficientBalance, InvalidInput, LedgerRuleError, NotFound, RefundRefused,
                              ReversalRefused, StorageFull)

BASE = "/api/v1/problems/"
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem: its status, slug and title, and when it happens."""

    status: int
    slug: str
    title: str
    description: str

    @property
    def uri(self) -> str:
        """The stable `type` URI."""
        return BASE + self.slug


def _p(status: int, slug: str, title: str, description: str) -> ProblemType:
    return ProblemType(status, slug, title, description)


# The one mapping from the error tree to problems (each class to its own; a subclass not listed gets
# its nearest listed base).
PROBLEMS: dict[type[ConnectorError], ProblemType] = {
    InsufficientBalance: _p(422, "insufficient-balance", "Insufficient balance",
                            "The posting would take the account below minus its credit limit; nothing was "
                            "written."),
    IdempotencyConflict: _p(409, "idempotency-conflict", "Idempotency key reused",
                            "The Idempotency-Key was used before with a different request (another body, "
                            "customer or operation); nothing was written. Idempotency keys are permanent."),
    CurrencyMismatch: _p(422, "currency-mismatch", "Currencies never mix",
                         "The customer holds money in another currency; nothing was written."),
    RefundRefused: _p(422, "refund-refused", "Refund refused",
                      "The refund exceeds what is refundable, or the refund policy forbids it."),
    ReversalRefused: _p(422, "reversal-refused", "Reversal refused", "The entry cannot be reversed."),
    PrepaymentsStopped: _p(422, "prepayments-stopped", "Prepayments are stopped",
                           "The compliance switch accept_prepayments is off: deposits are refused."),
    LedgerRuleError: _p(422, "ledger-rule", "Refused by a ledger rule",
                        "A valid request that a ledger rule refuses; nothing was written."),
    InvalidInput: _p(422, "invalid-input", "Invalid input",
                     "A field is missing or wrong; `field` (or `errors`) names it and `detail` says why."),
    NotFound: _p(404, "not-found", "Not found", "The customer, account or entry does not exist."),
    DatabaseUnavailable: _p(503, "database-unavailable", "Database unavailable",
                            "The database cannot be reached or its schema is not current."),
    StorageFull: _p(507, "storage-full", "Storage full", "The database's disk is full; nothing was written."),
    ConnectorError: _p(500, "internal", "Internal error", "An unexpected failure; the server log has more."),
}
# The API's own refusals, by slug.
API_PROBLEMS: dict[str, ProblemType] = {p.slug: p for p in [
    _p(400, "bad-request", "Bad request", "The request is malformed (for example the body is not JSON)."),
    _p(400, "idempotency-key-required", "Idempotency-Key required",
       "Every POST that moves money needs an Idempotency-Key header of 1 to 200 visible characters."),
    _p(401, "unauthorized", "Unauthorized",
       "No API key, or the key is unknown or revoked. Send `Authorization: Bearer <key>`."),
    _p(403, "forbidden", "Forbidden", "The API key's scope does not allow this (a read key cannot post)."),
    _p(404, "no-route", "No such endpoint", "Nothing is served at this path."),
    _p(405, "method-not-allowed", "Method not allowed", "The path does not take this method."),
    _p(413, "payload-too-large", "Payload too large",
       "The request body is over the limit; it was refused before it was read."),
    _p(503, "not-ready", "Not ready", "The database is unreachable or its migrations are not current."),
]}
ALL_PROBLEMS: dict[str, ProblemType] = {**{p.slug: p for p in PROBLEMS.values()}, **API_PROBLEMS}


class Problem(ConnectorError):
    """An API refusal answered as problem details (raised by routes and dependencies): a missing key or
    header, a scope that does not allow the route, a database that is not ready."""

    def __init__(self, slug: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.kind = ALL_PROBLEMS[slug]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_for(exc: ConnectorError) -> ProblemType:
    """The problem type of one of our errors: its class's, else its nearest listed base's."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return PROBLEMS[ConnectorError]


def body(kind: ProblemType, detail: str, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem document; free text passes the one sanitizer (`connector.redact`)."""
    doc: dict[str, Any] = {"type": kind.uri, "title": kind.title, "status": kind.status,
                           "detail": redact.text(detail)}
    if instance:
        doc["instance"] = instance
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc


def response(kind: ProblemType, detail: str, *, instance: str | None = None,
             headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """An `application/problem+json` response."""
    doc = body(kind, detail, instance, **extra)
    return Response(json.dumps(doc, ensure_ascii=False), status_code=kind.status, media_type=MEDIA_TYPE,
                    headers=headers)


def from_error(exc: ConnectorError, instance: str | None = None) -> Response:
    """The response for one of our errors (its `field`, if it names one, included)."""
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    return response(problem_for(exc), exc.message, instance=instance,
                    field=field if isinstance(field, str) else None)


def from_problem(exc: Problem, instance: str | None = None) -> Response:
    """The response for an API refusal."""
    return response(exc.kind, exc.detail, instance=instance, headers=exc.headers, **exc.extra)
