"""`decide`: which alerts a finished run raises, read from sync_runs and sync_flags (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from connector.db.engine import make_engine
from connector.ops.alerts import decide, load_alerts
from connector.sync import tables as t

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RULES = load_alerts({"consecutive_failures": 3})


class History:
    """Writes runs and flags the way the sync engine leaves them."""

    def __init__(self, engine: Engine, connection: str = "main") -> None:
        self.engine, self.connection, self.n = engine, connection, 0

    def run(self, status: str, *, dry_run: bool = False, reason: str | None = None, stats: dict | None = None,  # type: ignore[type-arg]
            connection: str | None = None) -> int:
        self.n += 1
        start = T0 + timedelta(minutes=15 * self.n)
        with self.engine.begin() as conn:
            return int(
                conn.execute(t.runs.insert().values(connection=connection or self.connection,
                                                    started_at=start,
                                                    finished_at=start + timedelta(minutes=2), status=status,
                                                    dry_run=dry_run, reason=reason,
                                                    stats=json.dumps(stats) if stats else None,
                                                    trigger="schedule")).inserted_primary_key[0])

    def flag(self, run_id: int, code: str, customer: str, detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(t.flags.insert().values(
                connection=self.connection, customer_id=f"zoho:Accounts:{customer}", code=code,
                marker=f"ps:{code}:zoho:Accounts:{customer}", detail=detail or f"{code} detail", opened_at=T0,
                run_id=run_id))

    def customer(self, crm_id: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.customers.insert().values(connection=self.connection, crm_id=crm_id, name=name,
                                                     fields="{}"))


@pytest.fixture
def history(db_url: str) -> History:
    return History(make_engine(db_url))


def events(h: History, run_id: int, rules=RULES) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.event for a in decide(h.engine, h.connection, run_id, rules)]


def test_a_failed_run_alerts_with_its_reason(history: History) -> None:
    history.run("ok")
    rid = history.run("failed", reason="CRM refused the token: access_token=abc123secretvalue")
    [alert] = decide(history.engine, "main", rid, RULES)
    assert (alert.event, alert.severity, alert.run_id, alert.connection) == ("run_failed", "warning", rid,
                                                                             "main")
    assert "failed" in alert.title and "CRM refused the token" in alert.text
    assert "abc123secretvalue" not in alert.text + json.dumps(alert.fields)
    assert alert.fields["consecutive_failures"] == 1 and alert.fields["status"] == "failed"
    # a crash counts too; the reason falls back to the run-level error kept in the stats
    crashed = history.run("crashed", stats={"errors": [{"stage": "pull", "reason": "bad row"},
                                                       {"stage": "run", "reason": "worker lost its lease"}]})
    [alert] = decide(history.engine, "main", crashed, RULES)
    assert "worker lost its lease" in alert.text and alert.fields["consecutive_failures"] == 2


def test_streak_alerts_at_n_and_each_multiple_only(history: History) -> None:
    fired = {}
    for _ in range(7):
        rid = history.run("failed")
        fired[rid] = events(history, rid)
    streaks = [rid for rid, evs in fired.items() if "consecutive_failures" in evs]
    assert streaks == [3, 6]
    assert all("run_failed" in evs for evs in fired.values())
    alert = next(a for a in decide(history.engine, "main", 6, RULES) if a.event == "consecutive_failures")
    assert alert.severity == "critical" and "6 runs in a row" in alert.title


def test_streak_skips_dry_interrupted_and_budget_runs_and_ends_on_success(history: History) -> None:
    history.run("failed")
    history.run("failed", dry_run=True)  # dry runs neither count nor alert
    history.run("interrupted")
    history.run("budget")
    third_real = history.run("failed")
    assert events(history, third_real) == ["run_failed"]  # streak 2
    last = history.run("crashed")
    assert events(history, last) == ["run_failed", "consecutive_failures"]  # streak 3
    history.run("partial")  # a success: the streak starts over
    again = [history.run("failed") for _ in range(2)]
    assert events(history, again[-1]) == ["run_failed"]
    dry = history.run("failed", dry_run=True)
    assert events(history, dry) == []


def test_recovery_after_failures_only(history: History) -> None:
    history.run("failed")
    history.run("failed")
    history.run("budget")  # neither: the previous decided run is still the failure
    ok = history.run("ok")
    [alert] = decide(history.engine, "main", ok, RULES)
    assert (alert.event, alert.severity) == ("recovered", "info")
    assert alert.fields["failed_runs"] == 2 and alert.fields["last_failed_run"] == 2
    assert events(history, history.run("ok")) == []  # ok after ok is news to nobody
    history.run("crashed")
    assert events(history, history.run("partial")) == ["recovered"]


def test_other_connections_do_not_mix(history: History) -> None:
    history.run("failed")
    history.run("ok", connection="other")  # not a recovery of main
    rid = history.run("failed")
    assert events(history, rid) == ["run_failed"]
    assert decide(history.engine, "other", rid, RULES) == []  # the run is not other's


def test_critical_flags_summarised(history: History) -> None:
    old = history.run("ok")
    history.flag(old, "negative", "900")  # opened by an earlier run: not news
    rid = history.run("ok")
    history.customer("100", "Acme 上海")
    for i in range(12):
        history.flag(rid, "negative", str(100 + i), f"balance -{i}.00 CNY (overdrawn)")
    history.flag(rid, "amount_mismatch", "200")
    history.flag(rid, "low_balance", "300")  # not a critical code
    [alert] = decide(history.engine, "main", rid, RULES)
    assert alert.event == "critical_flags" and alert.severity == "critical"
    assert alert.fields["counts"] == {"amount_mismatch": 1, "negative": 12}
    assert len(alert.fields["customers"]) == 10
    assert alert.fields["customers"][0] == {"customer_id": "zoho:Accounts:100", "name": "Acme 上海",
                                            "code": "negative", "detail": "balance -0.00 CNY (overdrawn)"}
    assert "13 critical flag(s): amount_mismatch 1, negative 12" in alert.text
    assert "Acme 上海 (zoho:Accounts:100)" in alert.text and "... and 3 more" in alert.text
    assert "zoho:Accounts:300" not in alert.text and "zoho:Accounts:900" not in alert.text


def test_events_switched_off_and_flags_of_a_failed_run(history: History) -> None:
    rid = history.run("failed")
    history.flag(rid, "manual_edit", "42")
    assert events(history, rid) == ["run_failed", "critical_flags"]
    only_flags = load_alerts({"events": ["critical_flags"], "critical_flags": ["manual_edit"]})
    assert events(history, rid, only_flags) == ["critical_flags"]
    no_flags = load_alerts({"critical_flags": []})
    assert events(history, rid, no_flags) == ["run_failed"]


def test_running_and_unknown_runs_raise_nothing(history: History) -> None:
    assert events(history, history.run("running")) == []
    assert events(history, 999) == []
