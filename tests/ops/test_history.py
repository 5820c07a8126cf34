"""`connector.ops.history`: what counts as a failure, the failure streak, a run's reason, the live run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from connector.db.engine import make_engine
from connector.ops import history
from connector.sync import tables as t

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Engine:
    return make_engine(db_url)


def add_runs(engine: Engine, *statuses: str, connection: str = "main", dry_run: bool = False) -> list[int]:
    """One run row per status, in order; returns their ids."""
    ids = []
    with engine.begin() as conn:
        for i, status in enumerate(statuses):
            ids.append(
                conn.execute(
                    t.runs.insert().values(
                        connection=connection,
                        started_at=T0 + timedelta(minutes=i),
                        status=status,
                        dry_run=dry_run,
                        finished_at=None if status == "running" else T0 + timedelta(minutes=i, seconds=30),
                    )
                ).inserted_primary_key[0]
            )
    return ids


def hold_lock(engine: Engine, run_id: int, connection: str = "main") -> None:
    with engine.begin() as conn:
        conn.execute(
            t.locks.insert().values(connection=connection, run_id=run_id, pid=4242, host="h", acquired_at=T0)
        )


def streak(engine: Engine, connection: str = "main", **kw: Any) -> int:
    with engine.connect() as conn:
        return history.failure_streak(conn, connection, **kw)


def test_failures_and_successes_are_disjoint_and_leave_interrupted_and_budget_out() -> None:
    assert set(history.FAILURES) == {"failed", "crashed", "held"}
    assert set(history.SUCCESSES) == {"ok", "partial"}
    for neither in ("interrupted", "budget", "running"):
        assert neither not in history.FAILURES and neither not in history.SUCCESSES


@pytest.mark.parametrize(
    "statuses,want",
    [
        ((), 0),
        (("ok",), 0),
        (("failed",), 1),
        (("failed", "crashed", "held"), 3),
        (("failed", "failed", "ok"), 0),  # a success ends the streak
        (("failed", "partial", "failed"), 1),  # partial is a success
        (("ok", "failed", "interrupted", "failed"), 2),  # an interrupted run neither extends nor ends it
        (("failed", "budget", "budget"), 1),  # nor does a run stopped by the API budget
        (("ok", "interrupted", "budget"), 0),
    ],
)
def test_failure_streak_counts_failures_since_the_last_success(
    engine: Engine, statuses: tuple[str, ...], want: int
) -> None:
    add_runs(engine, *statuses)
    assert streak(engine) == want


def test_a_running_row_that_holds_no_lock_is_a_failure_but_the_live_run_is_not(engine: Engine) -> None:
    dead, live = add_runs(engine, "ok", "running", "running")[1:]
    assert streak(engine) == 2  # neither is known to be alive: both processes died without a word
    hold_lock(engine, live)
    with engine.connect() as conn:
        assert history.live_run(conn, "main") == live
    assert streak(engine, live=live) == 1  # the dead one only
    assert streak(engine, live=dead) == 1


def test_streak_up_to_a_run_ignores_later_runs(engine: Engine) -> None:
    ids = add_runs(engine, "failed", "failed", "ok", "failed")
    assert streak(engine, up_to=ids[0]) == 1
    assert streak(engine, up_to=ids[1]) == 2
    assert streak(engine, up_to=ids[2]) == 0
    assert streak(engine) == 1


def test_streak_ignores_dry_runs_and_other_connections(engine: Engine) -> None:
    add_runs(engine, "failed")
    add_runs(engine, "ok", dry_run=True)  # a dry run is no success ...
    add_runs(engine, "failed", dry_run=True)  # ... and no failure
    add_runs(engine, "failed", "failed", connection="other")
    assert streak(engine) == 1
    assert streak(engine, "other") == 2
    assert streak(engine, "nobody") == 0


def test_live_run_is_none_without_a_lock(engine: Engine) -> None:
    add_runs(engine, "running")
    with engine.connect() as conn:
        assert history.live_run(conn, "main") is None


def row(reason: str | None = None, stats: Any = None) -> SimpleNamespace:
    return SimpleNamespace(
        reason=reason, stats=stats if stats is None or isinstance(stats, str) else json.dumps(stats)
    )


@pytest.mark.parametrize(
    "stats,want",
    [
        (None, {}),
        ("", {}),
        ("{not json", {}),
        ("[1, 2]", {}),  # valid JSON, but not a report
        ('"text"', {}),
        ({"errors": [], "status": "ok"}, {"errors": [], "status": "ok"}),
    ],
)
def test_stats_of_reads_a_report_or_gives_an_empty_one(stats: Any, want: dict[str, Any]) -> None:
    assert history.stats_of(row(stats=stats)) == want


def test_run_reason_prefers_the_column_and_redacts_it() -> None:
    got = history.run_reason(
        row(
            "token refresh failed: refresh_token=1000.abc client_secret=s3cr3t-value",
            {"errors": [{"stage": "run", "reason": "ignored"}]},
        )
    )
    assert got.startswith("token refresh failed: ")
    assert "1000.abc" not in got and "s3cr3t-value" not in got and "***" in got


def test_run_reason_falls_back_to_the_first_run_level_error() -> None:
    stats = {
        "errors": [
            "not a dict",
            {"stage": "pull", "reason": "a record error is not why the run ended"},
            {"stage": "start", "reason": ""},
            {"stage": "start", "reason": "CRM down: Authorization: Bearer abc.def.ghi"},
            {"stage": "run", "reason": "later"},
        ]
    }
    assert history.run_reason(row(None, stats)) == "CRM down: Authorization: Bearer ***"


@pytest.mark.parametrize(
    "stats", [None, "{broken", {"errors": None}, {"errors": [{"stage": "pull", "reason": "x"}]}]
)
def test_run_reason_is_empty_when_nothing_says_why(stats: Any) -> None:
    assert history.run_reason(row("", stats)) == ""
