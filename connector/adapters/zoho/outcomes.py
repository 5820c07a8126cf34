"""Per-record results of Zoho's batch writes, read from an answer in input order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from connector import redact
from connector.adapters.errors import UnexpectedAnswer


@dataclass(frozen=True)
class RecordOutcome:
    """Zoho's verdict on one record of a write, in input order."""

    index: int
    ok: bool
    record_id: str | None
    code: str
    message: str
    field: str | None = None
    action: str | None = None
    details: Mapping[str, Any] = dc_field(default_factory=dict)


def outcomes(items: Sequence[Mapping[str, Any]], start: int, expected: int,
             module: str) -> list[RecordOutcome]:
    """One `RecordOutcome` per item of a batch that began at record `start`; the count must match."""
    if len(items) != expected:
        raise UnexpectedAnswer(f"{module}: Zoho answered {len(items)} results for {expected} records",
                               crm="zoho")
    out = []
    for offset, item in enumerate(items):
        details = item.get("details") or {}
        ok = str(item.get("status", "")).lower() == "success"
        out.append(RecordOutcome(
            index=start + offset, ok=ok, code=str(item.get("code", "")), message=str(item.get("message", "")),
            record_id=str(details["id"]) if details.get("id") else None,
            field=details.get("api_name"), action=item.get("action"), details=redact.data(details)))
    return out
