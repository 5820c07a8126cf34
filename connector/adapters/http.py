"""Retry policy shared by the vendor clients (tenacity), with Retry-After and an injectable sleep; the
early-refresh rule for their access tokens; and the CRM's clock as its answers state it.

Only errors whose class is `retriable` are retried; a validation error never is. Waits follow
`connector.backoff.backoff` (doubling, capped, jittered into the upper half), and a server-given
Retry-After (within the cap) wins over the formula.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from connector.adapters.errors import CrmConnectionError, RateLimited
from connector.backoff import backoff, half_jitter
from connector.errors import is_retriable

log = logging.getLogger("connector.http")

# A token is replaced this share of its lifetime before it expires, at most `refresh_margin` seconds
# (300 s for Zoho's and Fxiaoke's hour-long tokens): enough for a call in flight, yet a token that
# lives a few seconds is still used for most of its life instead of being replaced before every call.
REFRESH_SHARE = 0.1


def refresh_margin(lifetime: float, cap: float) -> float:
    """Seconds before expiry at which a token of `lifetime` seconds is replaced: min(cap, 10% of it)."""
    return max(0.0, min(cap, lifetime * REFRESH_SHARE))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures."""

    max_attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True
    sleep: Callable[[float], None] | None = field(default=None, compare=False)

    def wait_seconds(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number `attempt` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        return backoff(attempt, self.initial_delay, self.max_delay,
                       jitter=half_jitter if self.jitter else None)

    def retrying(self, describe: Callable[[], str] = lambda: "request",
                 on_wait: Callable[[float, str], None] | None = None) -> Retrying:
        """A tenacity `Retrying` that applies this policy; `on_wait(seconds, why)` is told before each
        wait."""

        def _wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            return self.wait_seconds(state.attempt_number, retry_after)

        def _before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            log.warning("retrying %s after %s (attempt %d of %d, waiting %.2fs)", describe(), exc,
                        state.attempt_number, self.max_attempts, seconds)
            if on_wait is not None:
                on_wait(seconds, wait_reason(exc))

        kwargs: dict[str, Any] = {}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        return Retrying(
            retry=retry_if_exception(is_retriable),
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait,
            before_sleep=_before_sleep,
            reraise=True,
            **kwargs,
        )


def wait_reason(exc: BaseException | None) -> str:
    """Why a retry waits, in a few words, for a progress display."""
    crm = getattr(exc, "crm", "") or "the CRM"
    if isinstance(exc, RateLimited):
        return f"rate limited by {crm}"
    if isinstance(exc, CrmConnectionError):
        return f"no answer from {crm}; retrying"
    return f"{crm} failed ({type(exc).__name__}); retrying"


def connection_failure(exc: requests.RequestException, url: str) -> str:
    """Why a request to `url` got no answer, naming the server (scheme, host, port) and what to check."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return (f"{where} did not accept the connection in time: is the service running and reachable "
                "from here?")
    if "Connection refused" in text or "[Errno 111]" in text:
        return f"{where} refused the connection: is the service running there?"
    if any(hint in text for hint in _DNS_HINTS):
        return f"cannot find the host {parts.hostname!r} of {where}: check the address"
    if isinstance(exc, requests.Timeout):
        return f"{where} did not answer in time"
    return f"no answer from {where} ({type(exc).__name__})"


_DNS_HINTS = ("NameResolutionError", "Name or service not known", "nodename nor servname",
              "getaddrinfo failed", "Temporary failure in name resolution", "No address associated")


class ServerClock:
    """The CRM's own clock, as the `Date` header of its answers states it (whole seconds, never guessed).

    `latest` is the time of the newest answer; `since_mark` the time of the first answer after `mark()`
    (a sync run marks its start, so that is the CRM's time when the run began: where its cursors go)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latest: datetime | None = None
        self.since_mark: datetime | None = None

    def saw(self, header: str | None) -> None:
        """Note an answer's `Date` header; a missing or unreadable one changes nothing."""
        if not header:
            return
        try:
            at = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
        with self._lock:
            self.latest = at
            if self.since_mark is None:
                self.since_mark = at

    def mark(self) -> None:
        """From now on `since_mark` is the time of the next answer."""
        with self._lock:
            self.since_mark = None
