"""`/api/v1` customer routes: search, a customer's entries (cursor-paginated) and statements."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from connector.api.auth import Reader
from connector.api.models import CustomerHit, CustomerList, EntryPage, LedgerEntry
from connector.api.services import Services, services
from connector.compliance import load_rules
from connector.errors import InvalidInput
from connector.reports.attributes import StaticAttributes
from connector.statements import StatementLoader, to_csv, to_html, to_json
from connector.timeutil import day_bound, zone

router = APIRouter(prefix="/api/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]
Customer = Annotated[str, Path(description="Customer key, as the ledger stores it.")]
_MEDIA = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8", "json": "application/json"}


@router.get("/customers", response_model=CustomerList)
def search(svc: Svc, _who: Reader,
           query: Annotated[str, Query(max_length=255, description="Part of a customer key or CRM name, "
                                       "or a CRM id; empty lists the first customers.")] = "",
           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> CustomerList:
    """Customers by key or CRM name, with the CRM name, tier and open flags the sync keeps."""
    hits = svc.directory.search(query, limit)
    return CustomerList(data=[CustomerHit.model_validate(h.to_dict()) for h in hits])


@router.get("/customers/{customer}/entries", response_model=EntryPage)
def entries(customer: Customer, svc: Svc, _who: Reader,
            currency: Annotated[str | None, Query(description="Only this currency.")] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
            ) -> EntryPage:
    """A customer's entries in recording order, a page at a time (entries never change, so pages are
    stable: a page read again answers the same, and new entries only ever come at the end)."""
    rows = svc.ledger.queries.entries_after(customer, _after(cursor), limit + 1, currency)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [LedgerEntry(idempotency_key=r.pop("key"), **r) for r in rows]
    return EntryPage(data=data, next_cursor=_cursor(rows[-1]["id"]) if more else None)


@router.get("/customers/{customer}/statement",
            responses={200: {"content": {m: {} for m in _MEDIA.values()},
                             "description": "The statement as HTML, CSV or JSON."}})
def statement(customer: Customer, svc: Svc, _who: Reader,
              format: Annotated[Literal["html", "csv", "json"], Query()] = "html",
              lang: Annotated[Literal["zh", "en"], Query()] = "zh",
              start: Annotated[str | None, Query(alias="from", description="First day (in tz); default: "
                                                 "the first entry.")] = None,
              end: Annotated[str | None, Query(alias="to", description="Last day, inclusive (in tz); "
                                               "default now.")] = None,
              currency: Annotated[str | None, Query(description="Only this currency.")] = None,
              tz: Annotated[str, Query(description="Time zone for dates and the period (IANA).")] = "UTC",
              ) -> Response:
    """A customer statement (as `prepaid-sync statement`): opening balance, every entry, closing balance,
    open lots, refund policy."""
    zone_info = zone(tz, "tz", default="UTC")
    now = datetime.now(UTC)
    stop = day_bound(end, tz, "to", next_day=True) or now
    # CRM facts read first, on their own connection: the loader holds one while it builds
    names = StaticAttributes(svc.directory.lookup([customer]))
    loader = StatementLoader(svc.engine, day_bound(start, tz, "from"), min(stop, now),
                             attributes=names, rules=load_rules(svc.config),
                             currency=currency.upper() if currency else None)
    st = loader.one(customer)
    text = (to_html(st, lang, zone_info, now) if format == "html" else to_csv(st, lang, zone_info)
            if format == "csv" else to_json(st))
    return Response(text, media_type=_MEDIA[format])


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"e1:{last_id}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, value = text.partition(":")
        if tag == "e1" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidInput("cursor: not a cursor this API gave out (use next_cursor as it came)", field="cursor")
