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

from killpoints import WAIT, SandboxTap, wait_event, wait_until

MID_RUN = 5  # a run's 5th CRM request (after 3 settings reads and the token) is its first page of records
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
    return subprocess.Popen([
        sys.executable, "-m", "connector", "--log-format", "json", "schedule", "--config",
        str(cfg), "--worker-id", name
    ], env=env(), stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def manual_run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", "sync", "run", "--config", str(cfg), "--json"],
                          env=env(), capture_output=True, text=True, timeout=120)


def runs(db_url: str) -> list[Any]:
    with make_engine(db_url).connect() as conn:
        return list(
            conn.execute(select(t.runs).where(t.runs.c.dry_run.is_(False)).order_by(t.runs.c.started_at)))


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
    return wait_until(pred, what, max(timeout, WAIT))


def wait_log(log: Path, text: str, what: str) -> None:
    """Wait until a worker's log file holds `text` (the line it writes when it takes a signal)."""
    wait_until(lambda: text in log.read_text(errors="replace"), what)


def paused_mid_run(sb: ZohoSandbox) -> SandboxTap:
    """A tap that holds the run's 5th CRM request (its first read of records) until released."""
    tap = SandboxTap(sb.app)
    tap.arm(MID_RUN, "pause")
    return tap


def finished_scheduled(db_url: str) -> list[Any]:
    return [r for r in runs(db_url) if r.trigger == "schedule" and r.finished_at is not None]


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
            # Manual runs between scheduled ones (no timer: each waits for the next scheduled run to end),
            # until three scheduled runs ended and a manual run got through.
            manual: list[subprocess.CompletedProcess[str]] = []
            while len(finished_scheduled(db_url)) < 3 or not any(m.returncode == 0 for m in manual):
                assert len(
                    manual) < 20, f"20 manual runs and still {len(finished_scheduled(db_url))} scheduled"
                before = len(finished_scheduled(db_url))
                manual.append(manual_run(cfg))
                wait_until(lambda: len(finished_scheduled(db_url)) > before,  # noqa: B023
                           f"scheduled run {before + 1} to end")
        finally:
            codes = stop(procs)
        assert codes == [0] * workers
        rows = runs(db_url)
        assert_one_at_a_time(rows)
        # A run still going when the test sends SIGTERM at its end stops after its batch: `interrupted`.
        last = rows[-1].id
        assert not [(r.id, r.worker, r.status, r.reason) for r in rows if r.status not in (
            "ok", "partial") and not (r.status == "interrupted" and r.reason == "SIGTERM" and r.id == last)]
        scheduled = [r for r in rows if r.trigger == "schedule"]
        assert len(scheduled) >= 3
        refused = [m for m in manual if m.returncode == 4]
        assert all(m.returncode in (0, 4) for m in manual), [m.stderr for m in manual]
        for m in refused:  # the refusal names the holder; on PostgreSQL a refusal that lands while the holder
            # gives its lock back (row deleted, advisory lock not yet released) can only say "another session"
            assert "is being synced by " in m.stderr, m.stderr
            assert (" on " in m.stderr and "since" in m.stderr) or \
                (db_url.startswith("postgresql") and "by another session" in m.stderr), m.stderr
        assert any(m.returncode == 0 for m in manual)
        tasks_once(sb, some=False)


def test_killed_worker_run_is_resumed_by_another_after_its_lease(db_url: str, tmp_path: Path) -> None:
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        tap = SandboxTap(sb.app)
        tap.arm(MID_RUN + 2, "before")  # SIGKILLed while its run reads records
        a = tap.attach(start_worker(cfg, "doomed", tmp_path / "a.log"))
        try:
            wait_event(tap.reached, "the first worker's run to reach its kill point")
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
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        tap = paused_mid_run(sb)
        a = start_worker(cfg, "first", tmp_path / "a.log")
        wait_event(tap.reached, "the run to reach its first page of records")
        a.send_signal(signal.SIGTERM)
        wait_log(tmp_path / "a.log", "finishing the current batch", "the worker to take the SIGTERM")
        tap.disarm()
        assert a.wait(timeout=WAIT) == 0
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
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        tap = paused_mid_run(sb)
        a = start_worker(cfg, "impatient", tmp_path / "a.log")
        wait_event(tap.reached, "the run to reach its first page of records")
        a.send_signal(signal.SIGTERM)
        wait_log(tmp_path / "a.log", "finishing the current batch", "the worker to take the first SIGTERM")
        a.send_signal(signal.SIGTERM)  # the run is still held mid-batch: this one aborts the process
        assert a.wait(timeout=WAIT) == 1
        tap.disarm()
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
    # init --sandbox would ask the sandbox: write its settings by hand instead
    url = f"http://127.0.0.1:{port}"
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
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 2 seconds")
        org, pays = sb.org, sb.org.modules["Prepaid_Payments"]
        tap = SandboxTap(sb.app)
        for i in range(rounds):
            # Killed before its n-th CRM request; a run makes 11 (3 settings, token, reads, /deleted, writes).
            tap.arm(rng.randint(MID_RUN, 9), "before")
            tap.attach(start_worker(cfg, f"victim{i}", tmp_path / f"v{i}.log"))
            wait_event(tap.reached, f"worker victim{i} to reach its kill point")
            live = [
                r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")
            ]
            victim = live[rng.randrange(len(live))]
            if i % 2:
                org.delete(pays, victim["id"])
            else:
                org.update(pays, victim["id"], {"Amount": Decimal(str(victim["Amount"])) + 7})
            sb.config.clock_offset += 1.05  # Zoho keeps modified times to the second: move its clock on
        last = start_worker(cfg, "survivor", tmp_path / "s.log")
        try:
            wait_for(
                lambda: [r for r in runs(db_url) if r.worker == "survivor" and r.status in ("ok", "partial")],
                120, "a clean run after the changes")
        finally:
            assert stop([last]) == [0]
        rows = runs(db_url)
        assert_one_at_a_time([r for r in rows if r.status != "crashed"])
        assert all(r.status != "running" for r in rows)
        killed = sum(r.status == "crashed" for r in rows)  # killed mid-run, then taken over
        expected: dict[str, Decimal] = {}
        for p in pays.records.values():
            acc = (p.get("Account") or
                   {}).get("id") or f"unassigned-payment-{p['id']}"  # no customer: held apart
            if p.get("Payment_Status") == "Received" and p.get("Currency"):
                expected[f"zoho:Accounts:{acc}"] = expected.get(f"zoho:Accounts:{acc}", Decimal(0)) + \
                    Decimal(str(p["Amount"]))
        assert balances(db_url) == expected
        tasks_once(sb)
        lock = RunLock(make_engine(db_url), "zoho", holder="checker")
        lock.acquire()  # nothing left holding the connection
        lock.release()
    assert killed == rounds, f"{rounds} workers were killed mid-run but {killed} runs are marked crashed"


def test_once_stops_after_its_batch_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        tap = paused_mid_run(sb)
        log = tmp_path / "once.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "schedule", "--once", "--json", "--config",
             str(cfg)], env=env(), stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)
        wait_event(tap.reached, "the run to reach its first page of records")
        proc.send_signal(signal.SIGTERM)
        wait_log(log, "finishing the current batch", "the run to take the SIGTERM")
        tap.disarm()
        out, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0
    assert __import__("json").loads(out)["runs"][0]["status"] == "interrupted"
    assert runs(db_url)[0].status == "interrupted"


def test_manual_sync_run_stops_after_its_batch_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        cfg = config(tmp_path, sb.api_domain, db_url, "every 1 hours")
        tap = paused_mid_run(sb)
        log = tmp_path / "run.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "sync", "run", "--json", "--config",
             str(cfg)], env=env(), stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)
        wait_event(tap.reached, "the run to reach its first page of records")
        proc.send_signal(signal.SIGINT)
        wait_log(log, "SIGINT: stopping after the current batch", "the run to take the SIGINT")
        tap.disarm()
        out, _ = proc.communicate(timeout=WAIT)
        err = log.read_text()
    assert proc.returncode == 0 and "SIGINT: stopping after the current batch" in err
    assert __import__("json").loads(out)["status"] == "interrupted"
    assert runs(db_url)[0].reason == "SIGINT"
