"""The one backoff formula and the one Retry-After reader (used by the CRM clients and the alert outbox)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connector.adapters.http import RetryPolicy
from connector.backoff import backoff, half_jitter, parse_retry_after

NOW = datetime(2026, 10, 21, 7, 0, tzinfo=timezone.utc)


def test_backoff_doubles_from_the_initial_wait_up_to_the_cap() -> None:
    assert [backoff(n, 0.5, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [backoff(n, 30, 3600) for n in (1, 2, 8)] == [30, 60, 3600]
    assert backoff(0, 2.0, 10.0) == 2.0  # "no failure yet" waits the initial time, never less
    assert backoff(10_000, 0.5, 30.0) == 30.0  # a huge attempt number neither overflows nor passes the cap


def test_jitter_spreads_into_the_upper_half_and_the_policy_uses_the_same_formula() -> None:
    waits = [backoff(4, 0.5, 30.0, jitter=half_jitter) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits) and len(set(waits)) > 1
    assert backoff(3, 1.0, 60.0, jitter=lambda ceiling: ceiling / 4) == 1.0
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=False)
    assert [policy.wait_seconds(n) for n in range(1, 7)] == [backoff(n, 0.5, 8.0) for n in range(1, 7)]
    assert policy.wait_seconds(1, retry_after=20.0) == 8.0  # the server's wish, within the cap


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0),
    ("Wed, 21 Oct 2026 07:02:00 GMT", 120.0),  # RFC 9110's HTTP-date, counted from `now`
    ("Wednesday, 21-Oct-26 07:00:30 GMT", 30.0),  # the obsolete RFC 850 form is still a date
    ("Wed, 21 Oct 2026 06:59:00 GMT", 0.0),  # already passed: go now
    (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
])
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_date_without_now_counts_from_this_machines_clock() -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    got = parse_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert got is not None and 3500 < got <= 3600
    naive_now = NOW.replace(tzinfo=None)  # a naive `now` is taken as UTC, as HTTP dates are
    assert parse_retry_after("Wed, 21 Oct 2026 07:01:00 GMT", naive_now) == 60.0
