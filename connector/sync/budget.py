"""A connection's daily API budget: count every call before it is sent, stop cleanly before the limit.

The count lives in `sync_api_usage`, one row per connection and day, where the day is the calendar day
in the connection's time zone (Zoho and Fxiaoke both reset their daily allowances at local midnight of
the org). Every attempt is counted, retries included, so the count can run a little above what the CRM
charges, never below it. A call that would pass the limit is refused with the same `QuotaExhausted` the
CRM's own quota raises (with no `crm`), so a run stops the one way for either.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from sqlalchemy import Engine, select

from connector.adapters.errors import QuotaExhausted
from connector.db.engine import write_transaction
from connector.timeutil import next_midnight, utcnow
from connector.sync import tables as t


class ApiBudget:
    """Charges calls against `limit` units a day ('calls' or 'credits') and persists what was spent."""

    def __init__(self, engine: Engine, connection: str, *, limit: int | None, unit: str, tz: tzinfo,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.connection = connection
        self.limit = limit
        self.unit = unit
        self.tz = tz
        self.clock = clock

    def day(self, now: datetime | None = None) -> str:
        """Today's key, YYYY-MM-DD in the connection's zone."""
        return (now or self.clock()).astimezone(self.tz).date().isoformat()

    def next_window(self, now: datetime | None = None) -> datetime:
        """When the next day starts (UTC)."""
        return next_midnight(now or self.clock(), self.tz)

    def used(self, now: datetime | None = None) -> int:
        """Units spent today."""
        col = t.api_usage.c.credits if self.unit == "credits" else t.api_usage.c.calls
        with self.engine.connect() as conn:
            return int(conn.execute(select(col).where(t.api_usage.c.connection == self.connection,
                                                      t.api_usage.c.day == self.day(now))).scalar() or 0)

    def remaining(self, now: datetime | None = None) -> int | None:
        """Units left today (None: no budget set)."""
        return None if self.limit is None else max(0, self.limit - self.used(now))

    def charge(self, call_type: str, credits: int = 1) -> None:
        """Count one call of `credits` credits, or raise QuotaExhausted if it would pass the limit."""
        now = self.clock()
        cost = credits if self.unit == "credits" else 1
        day = self.day(now)
        u = t.api_usage.c
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(u.calls, u.credits).where(u.connection == self.connection, u.day == day)).first()
            spent = 0 if row is None else (row.credits if self.unit == "credits" else row.calls)
            if self.limit is not None and spent + cost > self.limit:
                # The message says what; `run_reason()` adds when, in the connection's zone.
                raise QuotaExhausted(
                    f"daily API budget of {self.limit} {self.unit} for {self.connection!r} would be passed "
                    f"by a {call_type} call costing {cost} ({spent} spent on {day})",
                    resume_at=self.next_window(now), summary="", zone=self.tz)
            if row is None:
                conn.execute(t.api_usage.insert().values(connection=self.connection, day=day, calls=1,
                                                         credits=credits, updated_at=now))
            else:
                conn.execute(t.api_usage.update().where(u.connection == self.connection, u.day == day).values(
                    calls=u.calls + 1, credits=u.credits + credits, updated_at=now))
