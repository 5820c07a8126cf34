"""`/api/v1` money routes: a customer's balance, consumptions, deposits, refunds, and the batch.

Every posting needs an `Idempotency-Key`; it becomes the ledger's permanent posting key `api:<key>`,
so the ledger's own idempotency decides: the same key with the same request answers the stored
result (`Idempotent-Replayed: true`); with another amount, currency, customer, operation or option
(memo aside, which is commentary) it is a 409. Routes are plain functions: the server runs them in
its thread pool, and the ledger serializes postings per customer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import JSONResponse

from connector import visible
from connector.api import problems
from connector.api.auth import Reader, Writer
from connector.api.models import (BalanceAnswer, BatchAnswer, BatchBody, BatchResult, ConsumptionBody,
                                  DepositBody, PostingAnswer, RefundBody)
from connector.api.problems import Problem
from connector.api.services import Services, services
from connector.errors import ConnectorError, InvalidInput
from connector.ledger import PostingResult
from connector.ledger.planners import Request, make_request
from connector.timeutil import parse_datetime

router = APIRouter(prefix="/api/v1", tags=["ledger"])
KEY_NAMESPACE = "api:"
MAX_IDEMPOTENCY_KEY = 200
REPLAYED = "Idempotent-Replayed"
Svc = Annotated[Services, Depends(services)]
Customer = Annotated[str, Path(description="Customer key, as the ledger stores it.")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Required: 1 to 200 visible "
                                       "characters, unique per posting, permanent.")]
_POSTED = {201: {"model": PostingAnswer, "description": "Posted (or replayed: `Idempotent-Replayed: true`)."},
           409: {"description": "The Idempotency-Key was used with another request."},
           422: {"description": "Refused by a ledger rule (insufficient-balance, ...) or invalid input."}}


@router.get("/customers/{customer}/balance", response_model=BalanceAnswer)
def balance(customer: Customer, svc: Svc, _who: Reader,
            currency: Annotated[str, Query(description="ISO 4217 code.")],
            as_of: Annotated[str | None,
                             Query(description="Balance at this business time (ISO 8601).")] = None,
            ) -> JSONResponse:
    """A customer's balance in one currency, and what is available to spend now."""
    view = svc.ledger.balance(customer, currency, as_of=parse_datetime(as_of, "as_of", end_of_day=True))[0]
    d = view.to_dict()
    answer = BalanceAnswer(customer=view.customer, currency=view.currency, balance=d["balance"],
                           available=d.get("available"), credit_limit=d.get("credit_limit"),
                           credit_used=d.get("debt"), as_of=d.get("as_of"))
    # Rendered here, in the route's worker thread: a returned model would be validated again by FastAPI
    # in a second trip to the thread pool. `response_model` still documents the answer.
    return JSONResponse(answer.model_dump(mode="json"))


@router.post("/customers/{customer}/consumptions", status_code=201, response_model=PostingAnswer,
             responses=_POSTED)  # type: ignore[arg-type]
def consume(customer: Customer, body: ConsumptionBody, svc: Svc, _who: Writer,
            idempotency_key: IdemKey = None) -> JSONResponse:
    """Draw money down (lots in drawdown order, then the credit line); 422 insufficient-balance past it."""
    return _post(svc, "consume", customer, body, idempotency_key)


@router.post("/customers/{customer}/deposits", status_code=201, response_model=PostingAnswer,
             responses=_POSTED)  # type: ignore[arg-type]
def deposit(customer: Customer, body: DepositBody, svc: Svc, _who: Writer,
            idempotency_key: IdemKey = None) -> JSONResponse:
    """Add a lot of prepaid money (with optional expiry, refundability and priority)."""
    return _post(svc, "deposit", customer, body, idempotency_key)


@router.post("/customers/{customer}/refunds", status_code=201, response_model=PostingAnswer,
             responses=_POSTED)  # type: ignore[arg-type]
def refund(customer: Customer, body: RefundBody, svc: Svc, _who: Writer,
           idempotency_key: IdemKey = None) -> JSONResponse:
    """Pay money back under the customer's refund policy; never more than is refundable."""
    return _post(svc, "refund", customer, body, idempotency_key)


@router.post("/consumptions:batch", response_model=BatchAnswer, response_model_exclude_none=True)
def consume_batch(body: BatchBody, svc: Svc, _who: Writer) -> JSONResponse:
    """Up to 1,000 consumptions in ONE transaction; each item is answered on its own (created, replayed
    or refused with its problem), a refused item writes nothing and does not stop the others."""
    results: list[BatchResult | None] = [None] * len(body.items)
    reqs: list[Request] = []
    where: list[int] = []
    for i, item in enumerate(body.items):
        try:
            reqs.append(_request("consume", item.customer, item, _ledger_key(item.idempotency_key,
                                                                                   f"items[{i}].idempotency_key")))
            where.append(i)
        except ConnectorError as exc:  # a Problem too (a missing key)
            results[i] = _refused(i, item.idempotency_key, exc)
    for i, outcome in zip(where, svc.ledger.post_batch(reqs) if reqs else [], strict=True):
        key = body.items[i].idempotency_key
        if outcome.result is not None:
            replayed = not outcome.result.created
            results[i] = BatchResult(index=i, idempotency_key=key,
                                     outcome="replayed" if replayed else "created", status=201,
                                     result=_answer(outcome.result, key))
        else:
            assert outcome.error is not None
            results[i] = _refused(i, key, outcome.error)
    done = [r for r in results if r is not None]
    answer = BatchAnswer(created=sum(r.outcome == "created" for r in done),
                         replayed=sum(r.outcome == "replayed" for r in done),
                         refused=sum(r.outcome == "refused" for r in done), results=done)
    # Rendered here (see `balance`): FastAPI would otherwise validate the 1,000 results a second time.
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True))


def _post(svc: Services, op: str, customer: str, body: ConsumptionBody, idem: str | None) -> JSONResponse:
    result = svc.ledger.post(_request(op, customer, body, _ledger_key(idem)))
    answer = _answer(result, idem or "").model_dump(mode="json", exclude_none=True)
    headers = {} if result.created else {REPLAYED: "true"}
    return JSONResponse(answer, status_code=201, headers=headers)


def _ledger_key(idem: str | None, field: str = "Idempotency-Key") -> str:
    """The ledger posting key of an Idempotency-Key; a missing or unusable one is refused."""
    text = (idem or "").strip()
    if not text:
        raise Problem("idempotency-key-required", f"{field}: required on every posting (1 to "
                      f"{MAX_IDEMPOTENCY_KEY} visible characters, unique per posting)", field=field)
    if len(text) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(f"{field}: at most {MAX_IDEMPOTENCY_KEY} characters (got {len(text)})",
                           field=field)
    return KEY_NAMESPACE + visible.check(text, field)


def _request(op: str, customer: str, body: ConsumptionBody, key: str) -> Request:
    extra: dict[str, Any] = {}
    if isinstance(body, DepositBody):
        extra = {"expires_at": parse_datetime(body.expires_at, "expires_at", end_of_day=True),
                 "refundable": body.refundable, "priority": body.priority}
    source = None
    if body.source:
        system, _, record = body.source.partition(":")
        source = (system, record)
    return make_request(op, customer, body.amount, body.currency, key,
                        effective_at=parse_datetime(body.effective_at, "effective_at"), source=source,
                        memo=body.memo, **extra)


def _answer(result: PostingResult, idem: str) -> PostingAnswer:
    d = result.data
    return PostingAnswer(op=d["op"], customer=d["customer"], currency=d["currency"], amount=d["amount"],
                         balance=d["balance"], idempotency_key=idem, entries=d["entries"],
                         payout=d.get("payout"), fee=d.get("fee"), policy=d.get("policy"))


def _refused(index: int, key: str, exc: ConnectorError) -> BatchResult:
    if isinstance(exc, Problem):
        kind, doc = exc.kind, problems.body(exc.kind, exc.detail, **exc.extra)
    else:
        kind = problems.problem_for(exc)
        field = exc.details.get("field")
        doc = problems.body(kind, exc.message, field=field if isinstance(field, str) else None)
    return BatchResult(index=index, idempotency_key=key, outcome="refused", status=kind.status, problem=doc)
