"""Real `prepaid-sync schedule` processes sharing one database (SQLite file or PostgreSQL schema).

Checked: two and three workers plus manual runs never run one connection twice at once and never
serve one due time twice; a SIGKILLed worker's run is resumed by another after its lease; a SIGTERM
mid-run exits 0 after the current batch and a restart completes the work; the ledger ends where a
fault-free run ends, and no task exists twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli.sync_cmd import write_config
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.sync import tables as t

SCHED = "\n[scheduler]\nlease_seconds = 5\nheartbeat_seconds = 1\npoll_seconds = 1\nshutdown_seconds = 20\n"


def config(tmp: Path, sandbox_url: str, db_url: str, schedule: str) -> Path:
    write_config(tmp, "zoho", sandbox=sandbox_url, database_url=db_url,
                 extra={"schedule": schedule, "deletion_check_minutes": 0})
    cfg = tmp / "prepaid-sync.toml"
    cfg.write_text(cfg.read_text() + SCHED)
    return cfg


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")}


def start_worker(cfg: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "connector", "--log-format", "json", "schedule", "--config",
                             str(cfg), "--worker-id", name], env=env(), stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))


def manual_run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", "sync", "run", "--config", str(cfg), "--json"],
                          env=env(), capture_output=True, text=True, timeout=120)


def runs(db_url: str) -> list[Any]:
    with make_engine(db_url).connect() as conn:
        return list(conn.execute(select(t.runs).where(t.runs.c.dry_run.is_(False)).order_by(t.runs.c.started_at)))


def assert_one_at_a_time(rows: list[Any]) -> None:
    finished = [r for r in rows if r.finished_at is not None]
    for a, b in zip(finished, finished[1:]):
        assert b.started_at >= a.finished_at, f"runs {a.id} ({a.worker}) and {b.id} ({b.worker}) overlap"
    slots = Counter(r.slot_at for r in rows if r.slot_at is not None and r.trigger == "schedule")
    assert max(slots.values(), default=1) == 1, f"a due time was served twice: {slots.most_common(3)}"


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return [p.wait(timeout=timeout) for p in procs]


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def balances(db_url: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for v in Ledger(make_engine(db_url)).accounts():
        out[v.customer] = out.get(v.customer, Decimal(0)) + v.balance
    return {k: v for k, v in out.items() if v}


def fault_free_balances(folder: Path, seed: int = 150) -> dict[str, Decimal]:
    """The ledger of the same seeded org synced once by a manual run, without faults."""
    with ZohoSandbox(seed=seed) as ref:
        url = f"sqlite:///{folder / 'ref.db'}"
        assert manual_run(config(folder, ref.api_domain, url, "every 1 hours")).returncode == 0
        return balances(url)


def tasks_once(sb: ZohoSandbox, *, some: bool = True) -> None:
    markers = Counter(r.get("Prepaid_Sync_Marker") for r in sb.org.modules["Tasks"].records.values()
                      if r.get("Prepaid_Sync_Marker"))
    assert bool(markers) or not some
    assert max(markers.values(), default=1) == 1


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_and_manual_runs_share_a_connection_one_run_at_a_time(db_url: str, tmp_path: Path,
                                                                        workers: int) -> None:
    with ZohoSandbox(seed=30, latency_ms=2) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 2 seconds")
        procs = [start_worker(cfg, f"w{i}", tmp_path / f"w{i}.log") for i in range(workers)]
        try:
            manual = []
            end = time.time() + 9
            while time.time() < end:
                time.sleep(0.7)
                manual.append(manual_run(cfg))
        finally:
            codes = stop(procs)
        assert codes == [0] * workers
        rows = runs(db_url)
        assert_one_at_a_time(rows)
        # A run still going when the test sends SIGTERM at its end stops after its batch: `interrupted`.
        last = rows[-1].id
        assert not [(r.id, r.worker, r.status, r.reason) for r in rows if r.status not in ("ok", "partial") and
                    not (r.status == "interrupted" and r.reason == "SIGTERM" and r.id == last)]
        scheduled = [r for r in rows if r.trigger == "schedule"]
        assert len(scheduled) >= 3
        refused = [m for m in manual if m.returncode == 4]
        assert all(m.returncode in (0, 4) for m in manual), [m.stderr for m in manual]
        for m in refused:
            assert "is being synced by " in m.stderr and " on " in m.stderr and "since" in m.stderr
        assert any(m.returncode == 0 for m in manual)
        tasks_once(sb, some=False)


def test_killed_worker_run_is_resumed_by_another_after_its_lease(db_url: str, tmp_path: Path) -> None:
    with ZohoSandbox(seed=150, latency_ms=80) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        a = start_worker(cfg, "doomed", tmp_path / "a.log")
        try:
            wait_for(lambda: any(r.status == "running" and r.worker == "doomed" for r in runs(db_url)), 60,
                     "the first worker to start its run")
            time.sleep(0.3)
            a.send_signal(signal.SIGKILL)
            a.wait()
            b = start_worker(cfg, "heir", tmp_path / "b.log")
            try:
                done = wait_for(lambda: [r for r in runs(db_url) if r.worker == "heir" and r.finished_at], 90,
                                "the second worker to resume the run")
            finally:
                assert stop([b]) == [0]
        finally:
            if a.poll() is None:
                a.kill()
        rows = runs(db_url)
        first = next(r for r in rows if r.worker == "doomed")
        assert first.status == "crashed" and "taken over by heir" in (first.reason or "")
        assert done[0].trigger == "recovery" and done[0].status in ("ok", "partial")
        assert done[0].slot_at == first.slot_at
        assert_one_at_a_time(rows)
        assert balances(db_url) == fault_free_balances(tmp_path / "ref")
        tasks_once(sb)


def test_sigterm_mid_run_exits_zero_and_a_restart_completes(db_url: str, tmp_path: Path) -> None:
    with ZohoSandbox(seed=150, latency_ms=80) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        a = start_worker(cfg, "first", tmp_path / "a.log")
        wait_for(lambda: any(r.status == "running" for r in runs(db_url)), 60, "a run to start")
        time.sleep(0.2)
        began = time.time()
        assert stop([a], timeout=30) == [0]
        assert time.time() - began < 25
        first = runs(db_url)[0]
        assert first.status == "interrupted" and first.reason == "SIGTERM", (first.status, first.reason)
        b = start_worker(cfg, "second", tmp_path / "b.log")
        try:
            wait_for(lambda: [r for r in runs(db_url) if r.worker == "second" and r.finished_at], 90,
                     "the restarted worker to finish the run")
        finally:
            assert stop([b]) == [0]
        second = [r for r in runs(db_url) if r.worker == "second"][0]
        assert second.status in ("ok", "partial") and second.trigger == "schedule"
        assert balances(db_url) == fault_free_balances(tmp_path / "ref")
        tasks_once(sb)


def test_second_sigterm_aborts_at_once_and_the_next_run_completes(db_url: str, tmp_path: Path) -> None:
    with ZohoSandbox(seed=150, latency_ms=80) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        a = start_worker(cfg, "impatient", tmp_path / "a.log")
        wait_for(lambda: any(r.status == "running" for r in runs(db_url)), 60, "a run to start")
        time.sleep(0.2)
        a.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        a.send_signal(signal.SIGTERM)
        # 1: aborted by our handler; -15: the first signal had already stopped the run and the process was
        # exiting (Python restores the default handler while it shuts down).
        assert a.wait(timeout=10) in (1, -signal.SIGTERM)
        b = start_worker(cfg, "after", tmp_path / "b.log")
        try:
            wait_for(lambda: [r for r in runs(db_url) if r.worker == "after" and r.finished_at], 90,
                     "the next worker to complete the work")
        finally:
            assert stop([b]) == [0]
        rows = runs(db_url)
        assert rows[0].worker == "impatient" and rows[0].status in ("crashed", "interrupted")
        assert_one_at_a_time(rows)
        assert balances(db_url) == fault_free_balances(tmp_path / "ref")
        tasks_once(sb)


class _Receiver:
    """A local webhook endpoint that keeps the alerts whose signature verifies."""

    def __init__(self, secret: str) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from connector.ops.alerts import verify_signature

        self.got: list[dict[str, Any]] = []
        self.bad = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify_signature(secret, self.headers.get("X-PrepaidSync-Timestamp"), body,
                                    self.headers.get("X-PrepaidSync-Signature"), now=time.time()):
                    outer.got.append(json.loads(body))
                    self.send_response(204)
                else:
                    outer.bad += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_worker_alerts_failure_and_recovery_to_a_signed_webhook(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    receiver = _Receiver("s3cret-for-tests")
    import socket

    with socket.socket() as probe:  # a free port for the sandbox, which is not started yet: the CRM is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sb = ZohoSandbox(port=port, seed=20)
    url = f"http://127.0.0.1:{port}"  # init --sandbox would ask the sandbox: write its settings by hand instead
    write_config(tmp_path, "zoho", database_url=db_url, env=sb.env(), extra={
        "accounts_url": url, "api_domain": url, "schedule": "every 2 seconds", "deletion_check_minutes": 0})
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text(cfg.read_text() + SCHED)
    cfg.write_text(cfg.read_text() + '\n[alerts]\n[[alerts.channels]]\nname = "ops"\nkind = "webhook"\n'
                   'url_env = "PS_TEST_HOOK_URL"\nsecret_env = "PS_TEST_HOOK_SECRET"\n')
    os.environ.update(PS_TEST_HOOK_URL=receiver.url, PS_TEST_HOOK_SECRET="s3cret-for-tests")
    worker = start_worker(cfg, "alerting", tmp_path / "w.log")
    try:
        wait_for(lambda: any(a["event"] == "run_failed" for a in receiver.got), 60, "a run_failed alert")
        sb.start()
        wait_for(lambda: any(a["event"] == "recovered" for a in receiver.got), 60, "a recovered alert")
    finally:
        assert stop([worker]) == [0]
        sb.stop()
        receiver.server.shutdown()
        for k in ("PS_TEST_HOOK_URL", "PS_TEST_HOOK_SECRET"):
            os.environ.pop(k, None)
    failed = next(a for a in receiver.got if a["event"] == "run_failed")
    assert failed["connection"] == "zoho" and receiver.bad == 0
    assert "s3cret-for-tests" not in (tmp_path / "w.log").read_text()


def test_sigkill_of_workers_at_random_points_then_resume_converges(db_url: str, tmp_path: Path) -> None:
    import random

    from connector.sync.lock import RunLock

    rng = random.Random(int(os.environ.get("CRASH_SEED", "11")))
    rounds = int(os.environ.get("WORKER_CRASH_ROUNDS", "3"))
    with ZohoSandbox(seed=150, latency_ms=60) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 2 seconds")
        org, pays = sb.org, sb.org.modules["Prepaid_Payments"]
        for i in range(rounds):
            w = start_worker(cfg, f"victim{i}", tmp_path / f"v{i}.log")
            wait_for(lambda: any(r.status == "running" and r.worker == f"victim{i}" for r in runs(db_url)), 60,
                     "the worker to start a run")  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.8))  # somewhere in that run
            w.send_signal(signal.SIGKILL)
            w.wait()
            live = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
            victim = live[rng.randrange(len(live))]
            if i % 2:
                org.delete(pays, victim["id"])
            else:
                org.update(pays, victim["id"], {"Amount": Decimal(str(victim["Amount"])) + 7})
            time.sleep(1.05)  # Zoho's one-second modified-time resolution
        changed_at = time.time()
        last = start_worker(cfg, "survivor", tmp_path / "s.log")
        try:
            wait_for(lambda: [r for r in runs(db_url) if r.worker == "survivor" and r.status in ("ok", "partial")
                              and r.started_at.timestamp() > changed_at + 0.5], 120, "a clean run after the changes")
        finally:
            assert stop([last]) == [0]
        rows = runs(db_url)
        assert_one_at_a_time([r for r in rows if r.status != "crashed"])
        assert all(r.status != "running" for r in rows)
        killed = sum(r.status == "crashed" for r in rows)  # killed mid-run, then taken over
        expected: dict[str, Decimal] = {}
        for p in pays.records.values():
            acc = (p.get("Account") or {}).get("id") or f"unassigned-payment-{p['id']}"  # no customer: held apart
            if p.get("Payment_Status") == "Received" and p.get("Currency"):
                expected[f"zoho:Accounts:{acc}"] = expected.get(f"zoho:Accounts:{acc}", Decimal(0)) + \
                    Decimal(str(p["Amount"]))
        assert balances(db_url) == expected
        tasks_once(sb)
        lock = RunLock(make_engine(db_url), "zoho", holder="checker")
        lock.acquire()  # nothing left holding the connection
        lock.release()
    assert killed >= 1, "no worker was killed mid-run; widen the kill window"


def test_once_stops_after_its_batch_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ZohoSandbox(seed=150, latency_ms=80) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        proc = subprocess.Popen([sys.executable, "-m", "connector", "schedule", "--once", "--json", "--config",
                                 str(cfg)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wait_for(lambda: any(r.status == "running" for r in runs(db_url)), 60, "the run to start")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert __import__("json").loads(out)["runs"][0]["status"] == "interrupted"
    assert runs(db_url)[0].status == "interrupted"


def test_manual_sync_run_stops_after_its_batch_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ZohoSandbox(seed=150, latency_ms=80) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        proc = subprocess.Popen([sys.executable, "-m", "connector", "sync", "run", "--json", "--config", str(cfg)],
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(r.status == "running" for r in runs(db_url)), 60, "the run to start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "SIGINT: stopping after the current batch" in err
    assert __import__("json").loads(out)["status"] == "interrupted"
    assert runs(db_url)[0].reason == "SIGINT"
