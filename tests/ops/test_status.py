"""Run history and status: the query models on SQLite and PostgreSQL, and the CLI built on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from connector.cli import app
from connector.config import load_settings
from connector.errors import NotFound
from connector.db.engine import make_engine
from connector.ops.status import connection_status, list_runs, run_detail
from connector.ops import tables as ot
from connector.sync import tables as t

runner = CliRunner()
NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # 17:00 in Asia/Shanghai
CONFIG = """
database_url = "sqlite:///unused.db"

[connections.acme]
crm = "zoho"
mapping = "mappings/zoho.yaml"
schedule = "every 15 minutes"
timezone = "Asia/Shanghai"
daily_api_budget = 5000

[connections.beta]
crm = "fxiaoke"
mapping = "mappings/fxiaoke.yaml"
base_url = "https://open.fxiaoke.example"

[connections.gamma]
crm = "zoho"
mapping = "mappings/zoho.yaml"
schedule = "0 8 * * 1-5"
timezone = "UTC"
"""


def _stats(**kw: Any) -> str:
    base = {"pulled": {"customers": 10, "payments": 4}, "deposits_posted": 3, "consumptions_posted": 0,
            "records_written": 5, "tasks_created": 1, "api_calls": 42, "error_total": 0, "errors": [],
            "dry_run": False}
    return json.dumps({**base, **kw})


def seed(engine: Engine, now: datetime) -> None:
    """Runs of every kind, a fresh and a stale lock, a schedule row, usage, flags, errors, outbox, alerts."""
    m = timedelta(minutes=1)
    crash_err = [{
        "record": "", "field": "", "stage": "run",
        "reason": "zoho 401 INVALID_TOKEN: access_token=1000.abcdef0123456789abcdef.0123456789abcdef01"
    }]
    rec_errs = [{"record": "zoho:Deals:1", "field": "Amount", "stage": "pull", "reason": "not a number"},
                {"record": "zoho:Deals:2", "field": "Stage", "stage": "pull", "reason": "unknown stage"}]

    def run(id_: int, conn: str, status: str, start: int, end: int | None, stats: str | None = None,
            **kw: Any) -> dict[str, Any]:
        return {"id": id_, "connection": conn, "status": status, "started_at": now + start * m,
                "finished_at": now + end * m if end is not None else None, "dry_run": False, "pid": 100 + id_,
                "stats": stats, "worker": kw.pop("worker", None), "trigger": kw.pop("trigger", "schedule"),
                "reason": kw.pop("reason", None), **kw}

    runs = [
        run(1, "acme", "ok", -120, -118, _stats()),
        run(2, "acme", "partial", -105, -103, _stats(error_total=2, errors=rec_errs)),
        run(3, "acme", "failed", -90, -89, _stats(error_total=1, errors=crash_err, api_calls=1)),
        run(4, "acme", "crashed", -75, -74, None),
        run(5, "acme", "running", -60, None),  # its lock is gone: it crashed
        run(6, "acme", "running", -2, None, worker="w-a"),  # holds the lock now
        run(7, "acme", "ok", -1, 0, _stats(), dry_run=True),  # dry runs never count
        run(8, "beta", "budget", -30, -29, _stats(api_calls=900),
            reason="daily API budget reached (900 of 900)", trigger="manual"),
        run(9, "beta", "running", -10, None, worker="w-b"),  # holder stopped heart-beating
    ]
    with engine.begin() as c:
        c.execute(t.runs.insert(), runs)
        c.execute(t.locks.insert(), [
            {"connection": "acme", "run_id": 6, "pid": 106, "host": "host-a", "acquired_at": now - 2 * m,
             "holder": "w-a", "heartbeat_at": now - timedelta(seconds=5), "lease_until": now + m},
            {"connection": "beta", "run_id": 9, "pid": 109, "host": "host-b", "acquired_at": now - 10 * m,
             "holder": "w-b", "heartbeat_at": now - 9 * m, "lease_until": now - 8 * m}])
        c.execute(ot.schedule.insert().values(connection="acme", spec="every 15 minutes",
                                              next_run_at=now + 15 * m, missed=1, updated_at=now))
        today = (now + timedelta(hours=8)).date()
        c.execute(t.api_usage.insert(), [{
            "connection": "acme", "day": today.isoformat(), "calls": 120, "credits": 4700, "updated_at": now
        }, {
            "connection": "acme", "day": (today - timedelta(days=1)).isoformat(), "calls": 9, "credits": 99,
            "updated_at": now
        }, {
            "connection": "beta", "day": now.date().isoformat(), "calls": 900, "credits": 0, "updated_at": now
        }])
        flag = {"connection": "acme", "marker": "m", "opened_at": now, "run_id": 2}
        c.execute(t.flags.insert(), [
            {**flag, "customer_id": "c1", "code": "low_balance", "cleared_at": None},
            {**flag, "customer_id": "c2", "code": "low_balance", "cleared_at": None},
            {**flag, "customer_id": "c3", "code": "expiring", "cleared_at": None},
            {**flag, "customer_id": "c4", "code": "low_balance", "cleared_at": now}])
        err = {"connection": "acme", "field": "", "stage": "pull", "reason": "not a number", "run_id": 2,
               "first_seen": now - 105 * m, "last_seen": now - 104 * m, "attempts": 1}
        c.execute(t.errors.insert(),
                  [{**err, "record": "zoho:Deals:1", "field": "Amount", "resolved_at": None}, {
                      **err, "record": "zoho:Deals:2", "field": "Stage", "reason": "unknown stage",
                      "resolved_at": None
                  }, {**err, "record": "zoho:Deals:3", "resolved_at": now - 60 * m},
                   {**err, "record": "zoho:Deals:4", "run_id": 1, "resolved_at": None}])
        box = {"connection": "acme", "run_id": 2, "kind": "write", "module": "Accounts", "payload": "{}",
               "created_at": now, "updated_at": now}
        c.execute(t.outbox.insert(), [{**box, "status": s} for s in
                                      ("failed", "planned", "sending", "dead", "ok", "ok")])
        alert = {"connection": "acme", "event": "run_failed", "channel": "email", "payload": "{}",
                 "next_attempt_at": now, "created_at": now}
        c.execute(ot.alerts.insert(), [{**alert, "status": s} for s in ("pending", "dead", "sent")])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "prepaid-sync.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    e = make_engine(sqlite_url)
    seed(e, NOW)
    return e


def check_acme(engine: Engine, config: Path) -> None:
    s = connection_status(engine, load_settings(config), "acme", NOW)
    assert (s.connection, s.crm, s.zone) == ("acme", "zoho", "Asia/Shanghai")
    assert s.now.utcoffset() == timedelta(hours=8) and s.now == NOW
    assert s.last_run is not None and (s.last_run.id, s.last_run.status) == (6, "running")
    assert s.last_finished is not None and (s.last_finished.id, s.last_finished.status) == (5, "crashed")
    assert s.last_finished.reason == "process ended mid-run (its lock is gone)"
    assert s.running is not None and (s.running.run_id, s.running.holder, s.running.stale) == (6, "w-a",
                                                                                               False)
    assert s.running.since.utcoffset() == timedelta(hours=8)
    assert s.consecutive_failures == 3  # runs 3 (failed), 4 (crashed), 5 (lock gone); 6 runs now, 7 is dry
    assert (s.next_run_at, s.next_run_source, s.missed) == (NOW + timedelta(minutes=15), "scheduler", 1)
    assert s.budget.model_dump() == {
        "day": "2026-01-15", "unit": "credits", "used_today": 4700, "budget": 5000, "remaining": 300
    }
    assert s.open_flags == {"expiring": 1, "low_balance": 2}
    assert s.failed_rows.model_dump() == {"errors_open": 3, "outbox_failed": 1, "outbox_pending": 2,
                                          "outbox_dead": 1}
    assert (s.alerts_pending, s.alerts_dead) == (1, 1)


def test_connection_status_sqlite(engine: Engine, config: Path) -> None:
    check_acme(engine, config)


@pytest.mark.postgres
def test_connection_status_postgres(pg_url: str, config: Path) -> None:
    engine = make_engine(pg_url)
    seed(engine, NOW)
    check_acme(engine, config)
    assert [r.id for r in list_runs(engine, "acme", 3)] == [7, 6, 5]
    engine.dispose()


def test_stale_lease_budget_stop_and_unscheduled(engine: Engine, config: Path) -> None:
    loaded = load_settings(config)
    beta = connection_status(engine, loaded, "beta", NOW)
    assert beta.running is not None and beta.running.stale and beta.running.lease_until == NOW - timedelta(
        minutes=8)
    assert beta.last_run is not None and (beta.last_run.id, beta.last_run.status) == (9, "running")
    assert beta.last_finished is not None and (beta.last_finished.id, beta.last_finished.status) == (8,
                                                                                                     "budget")
    assert beta.last_finished.duration_s == 60 and beta.last_finished.api_calls == 900
    assert beta.consecutive_failures == 0  # a budget stop is not a failure, and run 9 still holds its lock
    assert (beta.schedule, beta.next_run_at, beta.next_run_source) == (None, None, None)
    assert beta.budget.model_dump() == {
        "day": "2026-01-15", "unit": "calls", "used_today": 900, "budget": None, "remaining": None
    }
    gamma = connection_status(engine, loaded, "gamma", NOW)  # no schedule row yet: computed from the config
    assert (gamma.next_run_at, gamma.next_run_source) == (datetime(2026, 1, 16, 8, 0, tzinfo=UTC), "config")
    assert (gamma.last_run is None and gamma.last_finished is None and gamma.running is None
            and gamma.consecutive_failures == 0)
    assert gamma.open_flags == {} and gamma.failed_rows.errors_open == 0


def test_budget_day_is_the_connections_day(engine: Engine, config: Path) -> None:
    late = datetime(2026, 1, 15, 17, 30, tzinfo=UTC)  # already the 16th in Shanghai
    s = connection_status(engine, load_settings(config), "acme", late)
    assert (s.budget.day, s.budget.used_today, s.budget.remaining) == ("2026-01-16", 0, 5000)


@pytest.mark.parametrize(("statuses", "expected"), [
    (["ok", "failed", "crashed"], 2),
    (["failed", "ok"], 0),
    (["failed", "failed", "interrupted", "failed"], 3),  # a signal neither ends nor extends a streak
    (["failed", "ok", "budget", "failed"], 1),
    (["failed", "budget", "crashed", "partial"], 0),
    (["crashed", "failed", "failed"], 3),
    ([], 0),
])
def test_consecutive_failures(sqlite_url: str, config: Path, statuses: list[str], expected: int) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as c:
        for i, st in enumerate(statuses, 1):
            c.execute(t.runs.insert().values(id=i, connection="gamma", status=st, started_at=NOW,
                                             finished_at=NOW, dry_run=False))
    s = connection_status(engine, load_settings(config), "gamma", NOW)
    assert s.consecutive_failures == expected and s.last_finished == s.last_run


def test_list_runs_and_detail(engine: Engine) -> None:
    rows = list_runs(engine, None, 20)
    assert [r.id for r in rows] == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    by_id = {r.id: r for r in rows}
    assert (by_id[5].status, by_id[5].recorded_status) == ("crashed", "running")
    assert by_id[6].status == "running" and by_id[6].duration_s is None
    assert by_id[1].counts["pulled"] == 14 and by_id[1].counts["deposits_posted"] == 3
    assert by_id[1].duration_s == 120 and by_id[1].api_calls == 42
    assert "1000.abcdef" not in (by_id[3].reason or "") and "INVALID_TOKEN" in (by_id[3].reason or "")
    assert by_id[8].reason == "daily API budget reached (900 of 900)"
    assert [r.id for r in list_runs(engine, "beta", 1)] == [9]

    d = run_detail(engine, 2)
    assert d.run.status == "partial" and d.pulled == {"customers": 10, "payments": 4}
    assert [e.record for e in d.errors_listed] == ["zoho:Deals:1", "zoho:Deals:2"]
    assert [e.record for e in d.error_rows] == ["zoho:Deals:1", "zoho:Deals:2", "zoho:Deals:3"]
    assert (d.still_open, d.connection_open) == (2, 3)
    with pytest.raises(NotFound, match="no run with id 99"):
        run_detail(engine, 99)


# ---- CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def cli(sqlite_url: str, config: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(sqlite_url)
    seed(engine, datetime.now(UTC).replace(microsecond=0))

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, ["--db", sqlite_url, *args], catch_exceptions=False)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        if "--json" in args:
            return json.loads(result.stdout)
        return " ".join((result.stdout + result.stderr).split())  # rich wraps at 80 columns here

    return invoke


def test_status_cli(cli, config: Path) -> None:  # type: ignore[no-untyped-def]
    doc = cli("status", "--config", str(config), "--json")
    assert [c["connection"] for c in doc["connections"]] == ["acme", "beta", "gamma"]
    acme = doc["connections"][0]
    assert acme["consecutive_failures"] == 3 and acme["running"]["run_id"] == 6
    assert acme["last_run"]["started_at"].endswith("+08:00")
    assert doc["connections"][1]["running"]["stale"] is True
    only = cli("status", "--config", str(config), "--connection", "beta", "--json")
    assert [c["connection"] for c in only["connections"]] == ["beta"]

    text = cli("status", "--config", str(config))
    for words in ("acme · zoho · times in Asia/Shanghai", "3 in a row", "stale lease, expired at",
                  "300 left", "low_balance 2", "1 CRM write(s) failed", "not scheduled",
                  "run #6 by w-a", "1 run(s) missed", "computed from the config",
                  "#5 crashed", "#8 budget · manual", "daily API budget reached"):
        assert words in text, words
    assert "1000.abcdef" not in text
    assert "no connection named 'nope'" in cli("status", "--config", str(config), "--connection", "nope",
                                               code=2)


def test_runs_cli(cli, config: Path) -> None:  # type: ignore[no-untyped-def]
    doc = cli("runs", "--config", str(config), "--limit", "5", "--json")
    assert [r["id"] for r in doc["runs"]] == [9, 8, 7, 6, 5]
    assert [r["id"] for r in cli("runs", "--config", str(config), "--connection", "beta", "--json")["runs"]
            ] == [9, 8]
    text = cli("runs", "--config", str(config), "--limit", "3")
    assert "last 3 run(s)" in text and "budget" in text

    detail = cli("runs", "show", "3", "--config", str(config), "--json")
    assert detail["run"]["status"] == "failed" and "INVALID_TOKEN" in detail["run"]["reason"]
    shown = cli("runs", "show", "2", "--config", str(config))
    assert ("errors listed by the run (2 of 2)" in shown and "zoho:Deals:1" in shown
            and "still failing" in shown)
    assert "no run with id 99" in cli("runs", "show", "99", "--config", str(config), code=2)
    assert cli("runs", "show", "99", "--config", str(config), "--json", code=2)["error"] == "NotFound"


def test_runs_cli_without_config(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.delenv("PREPAID_SYNC_CONFIG", raising=False)
    doc = cli("runs", "-n", "2", "--json")  # --db only: times in UTC
    assert [r["id"] for r in doc["runs"]] == [9, 8] and doc["runs"][0]["started_at"].endswith("Z")


def test_relative_times_read_naturally_both_ways() -> None:
    from datetime import datetime, timedelta, timezone

    from connector.cli.ops_cmd import _relative

    now = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)
    assert _relative(now - timedelta(seconds=3.3), now) == "3.3s ago"
    assert _relative(now + timedelta(seconds=3.3), now) == "in 3.3s"
    assert _relative(now - timedelta(minutes=2, seconds=3), now) == "2m 3s ago"
