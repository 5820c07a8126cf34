"""A connection's `schedule` text -> an APScheduler 3 trigger ('every 15 minutes' or a five-field cron)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.timeutil import zone

_EVERY = re.compile(r"^\s*every\s+(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s*$",
                    re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]  # cron numbers 0-7; 0 and 7 are Sunday


def _weekdays(field: str) -> str:
    """Standard cron weekday numbers (0 or 7 = Sunday) -> names.

    APScheduler 3 numbers weekdays from Monday = 0, so handing it '1-5' would mean Tuesday to
    Saturday; names mean the same to both."""
    out = []
    for part in field.split(","):
        body, _, step = part.partition("/")
        if body == "*" and step:
            body = "0-6"
        if body == "*" or not any(ch.isdigit() for ch in body):
            out.append(part)
            continue
        lo, _, hi = body.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or int(lo) > 7 or (hi and int(hi) > 7):
            raise ValueError(f"weekday {part!r}: use 0-7 (0 and 7 are Sunday) or mon..sun")
        if step and not hi:
            hi = "7" if int(lo) else "6"
        days = range(int(lo), int(hi or lo) + 1, int(step or 1))
        out.extend(dict.fromkeys(_DAYS[d] for d in days))
    return ",".join(dict.fromkeys(out))


def parse_schedule(text: str) -> timedelta | str:
    """Validate `text`; an interval comes back as a timedelta, a cron as its normalized text (weekdays
    as names).

    Raises ValueError naming what is wrong, e.g. a cron with six fields or 'every 0 minutes'.
    """
    m = _EVERY.match(text)
    if m:
        n = int(m.group(1))
        if n <= 0:
            raise ValueError(f"schedule {text!r}: the interval must be positive")
        step = timedelta(**{_UNITS[m.group(2)[0].lower()]: n})
        return step
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"schedule {text!r}: expected 'every N minutes' or a cron with five fields "
                         f"(minute hour day month weekday), got {len(fields)} field(s)")
    try:
        fields[4] = _weekdays(fields[4])
        CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo("UTC"))
    except ValueError as exc:
        raise ValueError(f"schedule {text!r}: {exc}") from None
    return " ".join(fields)


def trigger(text: str, tz_name: str | None) -> BaseTrigger:
    """The APScheduler trigger for a schedule text in the given zone (interval anchored at the epoch, so
    every worker computes the same fire times)."""
    parsed = parse_schedule(text)
    tz = zone(tz_name)
    if isinstance(parsed, timedelta):
        return IntervalTrigger(seconds=int(parsed.total_seconds()),
                               start_date=datetime(2000, 1, 1, tzinfo=tz), timezone=tz)
    cron: CronTrigger = CronTrigger.from_crontab(parsed, timezone=tz)  # unannotated in APScheduler 3
    return cron
