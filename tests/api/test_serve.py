"""`prepaid-sync serve` as a real process: one start line with its URL, health and readiness, SIGTERM lets
the request in flight finish (held at a named point, `connector.testpoints`, so no timer decides) and
exits 0, and `--schedule` runs the scheduler in the same process and stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from api_support import Api, InProcessServer, ServeProcess, make_keys, secret_of
from connector import testpoints
from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli.sync_cmd import write_config
from connector.db.engine import make_engine
from connector.ledger import Ledger
from connector.sync import tables as t

from killpoints import WAIT, SandboxTap, wait_event, wait_until


def test_start_line_health_readiness_and_a_clean_stop(sqlite_url: str) -> None:
    write, _read = make_keys(sqlite_url)
    proc = ServeProcess(sqlite_url)
    try:
        assert proc.start["url"].startswith("http://127.0.0.1:") and proc.start["pid"] == proc.proc.pid
        assert requests.get(proc.url + "/healthz", timeout=WAIT).json()["status"] == "ok"
        ready = requests.get(proc.url + "/readyz", timeout=WAIT).json()
        assert ready["status"] == "ready" and ready["revision"] == ready["head"]
        r = requests.get(proc.url + "/api/v1/customers", headers={"Authorization": f"Bearer {write}"},
                         timeout=WAIT)
        assert r.status_code == 200
    finally:
        code, err = proc.stop()
    assert code == 0, err
    assert "SIGTERM" in err and "stopped listening" in err and secret_of(write) not in err
    assert proc.rest_of_stdout == ""  # the start line was the one line on stdout


def test_readyz_is_503_on_a_database_without_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db", upgrade=False)
    with InProcessServer(engine) as url:
        r = requests.get(url + "/readyz", timeout=WAIT)
        assert requests.get(url + "/healthz", timeout=WAIT).status_code == 200
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/api/v1/problems/not-ready" and r.json().get("revision") is None
    assert r.json()["head"] and "no tables" in r.json()["detail"]


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    write, _read = make_keys(sqlite_url)
    Ledger(make_engine(sqlite_url)).deposit("c1", "10.00", "CNY", "seed")
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    os.mkfifo(pipes / "reached")
    os.mkfifo(pipes / "release")
    log = tmp_path / "serve.log"
    proc = ServeProcess(sqlite_url, env={testpoints.PAUSE_ENV: "ledger.batch_written",
                                         testpoints.PIPES_ENV: str(pipes)}, stderr=log)
    api = Api(proc.url, sqlite_url, write, "")
    answer: dict[str, Any] = {}
    client = threading.Thread(target=lambda: answer.update(r=api.post(
        "/customers/c1/consumptions", {"amount": "4.00", "currency": "CNY"}, idem="in-flight")))
    client.start()
    with open(pipes / "reached", encoding="utf-8") as fh:  # the posting is written, not yet committed
        assert fh.readline().strip() == "ledger.batch_written"
    proc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopped listening" in log.read_text(), "serve to stop listening")
    with pytest.raises(requests.ConnectionError):  # no new request is taken once it stops
        requests.get(proc.url + "/healthz", timeout=WAIT)
    with open(pipes / "release", "w", encoding="utf-8") as fh:
        fh.write("go\n")
    client.join(WAIT)
    assert proc.proc.wait(WAIT) == 0
    assert answer["r"].status_code == 201 and answer["r"].json()["balance"] == "6.00"
    assert Ledger(make_engine(sqlite_url)).balance("c1", "CNY")[0].balance == 6


SCHED = "\n[scheduler]\nlease_seconds = 5\nheartbeat_seconds = 1\npoll_seconds = 1\nshutdown_seconds = 20\n"


def test_schedule_runs_in_the_same_process_and_stops_with_it(sqlite_url: str, tmp_path: Path) -> None:
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        write_config(tmp_path, "zoho", sandbox=sb.api_domain, database_url=sqlite_url,
                     extra={"schedule": "every 1 hours", "deletion_check_minutes": 0})
        cfg = tmp_path / "prepaid-sync.toml"
        cfg.write_text(cfg.read_text() + SCHED)
        tap = SandboxTap(sb.app)
        tap.arm(5, "pause")  # the run's first read of records
        write, _read = make_keys(sqlite_url)
        log = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")}
        proc = ServeProcess(sqlite_url, "--config", str(cfg), "--schedule", "--worker-id", "api-1",
                            env=env, replace_env=True, stderr=log)
        assert proc.start["schedule"] is True
        wait_event(tap.reached, "the scheduled run to reach its first page of records")
        r = requests.get(proc.url + "/api/v1/customers", headers={"Authorization": f"Bearer {write}"},
                         timeout=WAIT)
        assert r.status_code == 200  # the API answers while a run is in hand
        proc.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "finishing the requests in flight" in log.read_text(), "serve to take the SIGTERM")
        tap.disarm()
        assert proc.proc.wait(WAIT) == 0, log.read_text()
    with make_engine(sqlite_url).connect() as conn:
        runs = conn.execute(select(t.runs)).all()
    assert [(r.worker, r.trigger, r.status, r.reason) for r in runs] == [
        ("api-1", "schedule", "interrupted", "SIGTERM")]


def test_schedule_without_a_scheduled_connection_exits_2(sqlite_url: str, tmp_path: Path) -> None:
    mapping = Path(__file__).resolve().parents[2] / "connector" / "mapping" / "defaults" / "zoho.yaml"
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text(f'[connections.main]\ncrm = "zoho"\nmapping = "{mapping}"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "connector", "--db", sqlite_url, "serve", "--port", "0",
                           "--config", str(cfg), "--schedule"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2 and "no connection has a schedule" in done.stdout + done.stderr
    assert not done.stdout.startswith("{")  # no start line: it never listened
