"""Zoho's wire formats: date-times with an explicit offset, and JSON bodies whose Decimals stay exact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any


_last_parsed: tuple[str, datetime] = ("", datetime.min)


def parse_time(value: str) -> datetime:
    """Parse a Zoho date-time (`2026-01-05T10:15:07+05:30`, or with `Z`) into an aware datetime."""
    global _last_parsed
    last = _last_parsed
    if value is last[0]:
        return last[1]  # the same text again (client and adapter both read each record's Modified_Time)
    parsed = _parse_time(value)
    _last_parsed = (value, parsed)
    return parsed


def _parse_time(value: str) -> datetime:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_time(value: datetime) -> str:
    """Render an instant the way Zoho expects: ISO 8601, whole seconds, explicit offset."""
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.replace(microsecond=0).isoformat()


_DEC_MARK = "\u0000dec:"


def _strip_marks(text: str) -> str:
    out: list[str] = []
    needle = '"\\u0000dec:'
    start = 0
    while True:
        hit = text.find(needle, start)
        if hit < 0:
            out.append(text[start:])
            return "".join(out)
        end = text.index('"', hit + len(needle))
        out.append(text[start:hit])
        out.append(text[hit + len(needle):end])
        start = end + 1


def encode(payload: Any) -> str:
    """Serialize a request body for Zoho (Decimal-exact)."""
    return _strip_marks(json.dumps(_mark(payload), ensure_ascii=False, separators=(",", ":")))


def _mark(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send non-finite amount {value}")
        return f"{_DEC_MARK}{value}"
    if isinstance(value, float):
        raise TypeError("floats are not sent to Zoho; use Decimal")
    if isinstance(value, Mapping):
        return {k: _mark(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark(v) for v in value]
    return value

