"""Parsing times from people and files: ISO 8601 dates and date-times, always ending up aware UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from connector.errors import InvalidInput


def parse_datetime(value: str | date | datetime | None, field: str, *, end_of_day: bool = False) -> datetime | None:
    """Parse `2026-03-01`, `2026-03-01T10:00:00+08:00` or `...Z`; naive times are UTC.

    A bare date means the start of that day in UTC, or with `end_of_day` the start of the next
    day (so "expires 2026-03-31" keeps the money usable through the 31st).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        day = value
    else:
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except ValueError:
            raise InvalidInput(f"{field}: {value!r} is not an ISO 8601 date or date-time "
                               "(e.g. 2026-03-31 or 2026-03-31T12:00:00+08:00)", field=field) from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def parse_date(value: str | date | None, field: str) -> date | None:
    """Parse an ISO date (`2026-03-31`)."""
    if value is None or isinstance(value, date):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not an ISO date (YYYY-MM-DD)", field=field) from None
