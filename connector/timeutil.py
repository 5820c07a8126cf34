"""Time: the current UTC time, time zones by name, and parsing times from people and files (ISO 8601
dates and date-times, always ending up aware UTC).

Every date and time that enters prepaid-sync lies in one documented range, `EARLIEST` to
`LATEST` (1970-01-01 to the end of 9998-12-31, UTC), so that no conversion, end-of-day step or
window arithmetic can overflow; anything outside is refused (exit 2) by `check_range`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal import get_localzone

from connector.errors import InvalidInput

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # the end of 9998-12-31: a year's margin below datetime.max
FIRST_DAY, LAST_DAY = EARLIEST.date(), (LATEST - timedelta(days=1)).date()


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def next_midnight(now: datetime, tz: tzinfo) -> datetime:
    """The first 00:00 in zone `tz` after `now`, in UTC: when a daily allowance counted by `tz`'s day
    resets."""
    local = now.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def zone(name: str | None, field: str = "timezone", *, default: str | None = None) -> ZoneInfo:
    """The IANA zone `name`; without a name, the zone named `default`, else the machine's zone.

    An unknown name is refused (`InvalidInput`, exit 2) naming `field`.
    """
    name = name or default
    if not name:
        local = get_localzone()
        return local if isinstance(local, ZoneInfo) else ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{field}: {name!r} is not an IANA time zone (e.g. UTC, Asia/Shanghai)",
                           field=field) from None


def _out_of_range(value: object, field: str) -> InvalidInput:
    hint = "; to keep money that never expires, leave the expiry out" if field.startswith("expires") else ""
    return InvalidInput(f"{field}: {value!r} is outside the supported range: dates and times from "
                        f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()} (UTC){hint}", field=field)


def check_range(value: datetime, field: str, shown: object = None) -> datetime:
    """An aware datetime in UTC within `EARLIEST`..`LATEST`, or a refusal naming `field`."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is in year 0 in UTC
        raise _out_of_range(shown if shown is not None else value.isoformat(), field) from None
    if not EARLIEST <= utc <= LATEST:
        raise _out_of_range(shown if shown is not None else value.isoformat(), field)
    return utc


def check_day(value: date, field: str, shown: object = None) -> date:
    """A date within `FIRST_DAY`..`LAST_DAY`, or a refusal naming `field`."""
    if not FIRST_DAY <= (value.date() if isinstance(value, datetime) else value) <= LAST_DAY:
        raise _out_of_range(shown if shown is not None else value.isoformat(), field)
    return value


def parse_datetime(value: str | date | datetime | None, field: str, *,
                   end_of_day: bool = False) -> datetime | None:
    """Parse `2026-03-01`, `2026-03-01T10:00:00+08:00` or `...Z`; naive times are UTC.

    A bare date means the start of that day in UTC, or with `end_of_day` the start of the next
    day (so "expires 2026-03-31" keeps the money usable through the 31st).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return check_range(value, field)
    if isinstance(value, date):
        day = check_day(value, field)
    else:
        text = value.strip()
        try:
            if not text.isascii():
                raise ValueError("not ASCII")
            if len(text) == 10:
                day = check_day(date.fromisoformat(text), field, value)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
                return check_range(parsed, field, value)
        except ValueError:
            raise InvalidInput(f"{field}: {value!r} is not an ISO 8601 date or date-time "
                               "(e.g. 2026-03-31 or 2026-03-31T12:00:00+08:00)", field=field) from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def parse_date(value: str | date | None, field: str) -> date | None:
    """Parse an ISO date (`2026-03-31`)."""
    if value is None or isinstance(value, date):
        return value if value is None else check_day(value, field)
    text = value.strip()
    if not text:
        return None
    try:
        if not text.isascii():
            raise ValueError("not ASCII")
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not an ISO date (YYYY-MM-DD)", field=field) from None
    return check_day(day, field, value)


def day_bound(value: str | None, tz_name: str, field: str, *, next_day: bool = False) -> datetime | None:
    """A period bound from a person: a date (the start of that day in `tz_name`, or of the next day with
    `next_day`) or a date-time (naive: in `tz_name`), as aware UTC; None for nothing."""
    if value is None or not value.strip():
        return None
    tz = zone(tz_name, "tz", default="UTC")
    text = value.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text) + timedelta(days=1 if next_day else 0)
            return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not an ISO 8601 date or date-time", field=field) from None
    return (parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed).astimezone(UTC)
