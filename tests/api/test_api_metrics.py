"""Issue 15.5: `/metrics` in Prometheus text format. After a sync run against the Zoho sandbox and some
API requests, every figure equals what the database holds (runs, API calls and budget, open flags,
liability), HTTP requests are counted by route template and status, and nothing secret or customer
specific is in a label."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select

from api_support import Api, InProcessServer, ServeProcess, make_keys, secret_of
from connector.db.engine import make_engine
from connector.ledger import Ledger
from connector.mapping.loader import DEFAULTS
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.timeutil import zone

sys.path.insert(0, str(Path(__file__).parents[1] / "sync"))
from helpers import Clock, zoho_engine  # noqa: E402

BUDGET = 5000
ZONE = "Asia/Shanghai"
BALANCE = "/api/v1/customers/{customer}/balance"
CONSUME = "/api/v1/customers/{customer}/consumptions"


def scrape(url: str, key: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics` by (name, sorted labels)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = requests.get(f"{url}/metrics", headers=headers, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "prepaid-sync.toml"
    path.write_text(f'[connections.zoho]\ncrm = "zoho"\nmapping = "{DEFAULTS / "zoho.yaml"}"\n'
                    f'timezone = "{ZONE}"\ndaily_api_budget = {BUDGET}\n', encoding="utf-8")
    return path


def test_metrics_after_a_sync_run_and_requests_match_the_database(db_url: str, tmp_path: Path) -> None:
    clock = Clock(datetime.now(UTC))  # the budget's day must be today's, as the scrape reads it
    eng, _sb = zoho_engine(db_url, seed=40, clock=clock)
    eng.budget = ApiBudget(eng.engine, "zoho", limit=BUDGET, unit="credits", tz=zone(ZONE), clock=clock)
    report = eng.run()
    assert report.status in ("ok", "partial")
    clock.advance(minutes=1)
    eng.run()
    write, read = make_keys(db_url)
    engine = make_engine(db_url)
    Ledger(engine).deposit("c1", "100.00", "CNY", "seed-c1")
    with InProcessServer(engine, _config(tmp_path)) as url:
        api = Api(url, db_url, write, read)
        for _ in range(3):
            assert api.get("/customers/c1/balance", key=read, currency="CNY").status_code == 200
        assert api.get("/customers/c1/balance", key="", currency="CNY").status_code == 401
        assert api.post("/customers/c1/consumptions", {"amount": "1.00", "currency": "CNY"},
                        idem="m-1").status_code == 201
        assert api.get("/nowhere/c1").status_code == 404
        r = requests.get(f"{url}/metrics", timeout=60)
        got = scrape(url)
        text = r.text

    assert ("prepaid_sync_http_requests_total", (("method", "GET"), ("route", BALANCE), ("status", "200"))) \
        in got and got[("prepaid_sync_http_requests_total",
                        (("method", "GET"), ("route", BALANCE), ("status", "200")))] == 3
    assert got[("prepaid_sync_http_requests_total", (("method", "GET"), ("route", BALANCE),
                                                     ("status", "401")))] == 1
    assert got[("prepaid_sync_http_requests_total", (("method", "POST"), ("route", CONSUME),
                                                     ("status", "201")))] == 1
    assert got[("prepaid_sync_http_requests_total", (("method", "GET"), ("route", "unmatched"),
                                                     ("status", "404")))] == 1
    assert got[("prepaid_sync_http_request_duration_seconds_count",
                (("method", "GET"), ("route", BALANCE)))] == 4
    assert got[("prepaid_sync_http_request_duration_seconds_bucket",
                (("le", "+Inf"), ("method", "GET"), ("route", BALANCE)))] == 4
    # Labels carry templates, never a customer key or a key's secret.
    assert "/customers/c1" not in text and "nowhere" not in text
    assert secret_of(write) not in text and secret_of(read) not in text and "ps_live_" not in text
    _check_database_figures(got, engine)


def _check_database_figures(got: dict[Any, float], engine: Any) -> None:
    with engine.connect() as conn:
        runs = conn.execute(select(t.runs.c.status, func.count()).where(t.runs.c.connection == "zoho")
                            .group_by(t.runs.c.status)).all()
        last_ok = conn.execute(select(func.max(t.runs.c.finished_at)).where(
            t.runs.c.status.in_(("ok", "partial")))).scalar_one()
        calls, credits = conn.execute(select(func.sum(t.api_usage.c.calls), func.sum(t.api_usage.c.credits))
                                      .where(t.api_usage.c.connection == "zoho")).one()
        flags = conn.execute(select(t.flags.c.code, func.count()).where(
            t.flags.c.connection == "zoho", t.flags.c.cleared_at.is_(None)).group_by(t.flags.c.code)).all()
    assert len(runs) >= 1
    for status, n in runs:
        assert got[("prepaid_sync_runs_total", (("connection", "zoho"), ("status", status)))] == n
    assert got[("prepaid_sync_last_success_timestamp_seconds", (("connection", "zoho"),))] == \
        last_ok.timestamp()
    assert got[("prepaid_sync_last_run_duration_seconds", (("connection", "zoho"),))] >= 0
    assert calls and got[("prepaid_sync_api_calls_total", (("connection", "zoho"),))] == calls
    assert got[("prepaid_sync_api_credits_total", (("connection", "zoho"),))] == credits
    used = ApiBudget(engine, "zoho", limit=BUDGET, unit="credits", tz=zone(ZONE)).used()
    assert used > 0 and got[("prepaid_sync_api_used_today", (("connection", "zoho"), ("unit", "credits")))] \
        == used
    assert got[("prepaid_sync_api_budget_remaining", (("connection", "zoho"), ("unit", "credits")))] == \
        BUDGET - used
    assert got[("prepaid_sync_api_budget", (("connection", "zoho"), ("unit", "credits")))] == BUDGET
    for code, n in flags:
        assert got[("prepaid_sync_open_flags", (("connection", "zoho"), ("kind", code)))] == n
    owed: dict[str, Decimal] = {}
    for view in Ledger(engine).accounts():
        owed[view.currency] = owed.get(view.currency, Decimal(0)) + view.balance
    assert len(owed) >= 1
    for cur, total in owed.items():
        assert Decimal(str(got[("prepaid_sync_ledger_liability", (("currency", cur),))])) == total
    assert got[("prepaid_sync_database_up", ())] == 1


def test_metrics_can_want_a_key(sqlite_url: str, tmp_path: Path) -> None:
    _write, read = make_keys(sqlite_url)
    serve = ServeProcess(sqlite_url, "--metrics-auth", "key", stderr=tmp_path / "serve.log")
    try:
        assert requests.get(f"{serve.url}/metrics", timeout=60).status_code == 401
        got = scrape(serve.url, read)
        assert got[("prepaid_sync_database_up", ())] == 1
        assert ("prepaid_sync_http_requests_total", (("method", "GET"), ("route", "/metrics"),
                                                     ("status", "401"))) in got
    finally:
        code, err = serve.stop()
    assert code == 0 and secret_of(read) not in err


def test_an_unreachable_database_is_a_figure_not_a_failed_scrape(tmp_path: Path) -> None:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")  # nobody there
    with InProcessServer(engine) as url:
        got = scrape(url)
    assert got[("prepaid_sync_database_up", ())] == 0
    assert not any(name.startswith("prepaid_sync_runs") for name, _ in got)
