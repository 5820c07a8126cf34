"""How long to wait before trying again: one backoff formula and one `Retry-After` reader.

The CRM clients' retry policy (`connector.adapters.http.RetryPolicy`, run by tenacity) and the alert
outbox (`connector.ops.alerts.outbox`) both use them, so both grow their waits the same way and both
obey a server that says when to come back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

Jitter = Callable[[float], float]

# 2**62 times any sane initial wait is far past every cap; stopping there keeps the float finite.
_MAX_DOUBLINGS = 62


def half_jitter(ceiling: float) -> float:
    """A wait drawn from [ceiling/2, ceiling]: callers do not retry in lockstep, yet never too soon."""
    return ceiling / 2 + random.random() * ceiling / 2


def backoff(attempt: int, initial: float, cap: float, *, jitter: Jitter | None = None) -> float:
    """Seconds to wait after the `attempt`-th failed try (1-based): `initial` doubled for each try
    after the first, at most `cap`, then spread by `jitter` when one is given."""
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    ceiling = min(cap, initial * 2 ** doublings)
    return jitter(ceiling) if jitter is not None else ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for, or None when it is absent or unreadable.

    Both forms of RFC 9110 are read: delay-seconds (`120`) and an HTTP-date
    (`Wed, 21 Oct 2026 07:28:00 GMT`), the latter counted from `now` (default: this machine's
    clock). A date in the past, or a negative number, means "now": 0 seconds.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        at = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at  # HTTP dates are GMT
    start = now or datetime.now(timezone.utc)
    start = start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start
    return max(0.0, (at - start).total_seconds())
