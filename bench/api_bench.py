"""API benchmark: a real HTTP load generator against a running `prepaid-sync serve`, SQLite and PostgreSQL.

    python bench/api_bench.py                                  # both backends, 5 s per measurement
    python bench/api_bench.py --backends sqlite --seconds 3

For each backend: a fresh database (PostgreSQL: a fresh schema in --pg, dropped afterwards), a write key
made with `prepaid-sync apikey create`, --customers customers seeded with a deposit, then
`prepaid-sync serve --port 0` started as a child process (its URL read from its JSON start line), and
three measurements with `wrk`: balance reads and single consumptions with --clients concurrent
connections (each consumption with its own Idempotency-Key), then consumptions through
`/api/v1/consumptions:batch` (--batch-items items a request, --batch-clients connections). The same work
then runs through the Python API in this process, on the same database, with as many threads:
`Ledger.balance`, `Ledger.post` on a group-commit ledger (what `serve` uses), `Ledger.post_batch`.
Each figure is printed beside its target and its Python-API figure; the server's CPU time per request
(read from /proc) and the load generator's own CPU share are printed too, since this 2-core machine
is shared. The run ends by checking the consumptions in the database against what wrk was answered,
and `/metrics` against wrk's request counts.

Targets (2-core machine): >= 2,000 balance reads/s, >= 1,000 single posts/s, >= 20,000 batch items/s,
p99 <= 50 ms for single requests.

The load generator is `wrk` (C, epoll; Debian package: `apt-get install -y wrk`), driven by Lua for
the POST bodies and unique keys. A Python client would need a large share of the two cores itself
and so measure itself as much as the server; without `wrk` the benchmark stops and says how to
install it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"balance": 2000.0, "single": 1000.0, "batch": 20000.0}
P99_TARGET_MS = 50.0
CURRENCY = "CNY"
LUA = Path(__file__).with_name("api_bench.lua")


def cli(db: str, *args: str) -> str:
    """`prepaid-sync --db DB ARGS...`; its stdout."""
    done = subprocess.run([sys.executable, "-m", "connector", "--db", db, *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"prepaid-sync {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def seed(db: str, customers: int) -> None:
    """One large deposit per customer, so no consumption of the run is refused."""
    from connector.db.engine import make_engine
    from connector.ledger import Ledger
    from connector.ledger.planners import make_request

    ledger = Ledger(make_engine(db))
    for start in range(0, customers, 1000):
        ledger.post_batch([make_request("deposit", f"b{c}", "1000000.00", CURRENCY, f"seed:{c}")
                           for c in range(start, min(start + 1000, customers))])


class Serve:
    """`prepaid-sync serve --port 0` as a child process; its URL from the start line."""

    def __init__(self, db: str, extra: list[str]) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="api-bench-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "connector", "--db", db, "serve", "--port", "0",
                                      *extra], stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(60)
            raise SystemExit(f"serve did not start: {Path(self.log.name).read_text()[-2000:]}")
        self.url: str = json.loads(line)["url"]

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """SIGTERM; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        os.unlink(self.log.name)
        return code


def wrk(serve: Serve, key: str, mode: str, seconds: float, clients: int, args: argparse.Namespace,
        run_id: str) -> dict[str, Any]:
    """One wrk run; its JSON summary (from the Lua `done`), plus client and server CPU."""
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_CUSTOMERS": str(args.customers), "BENCH_RUN": run_id,
           "BENCH_ITEMS": str(args.batch_items), "BENCH_CURRENCY": CURRENCY}
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA),
           "-H", f"Authorization: Bearer {key}", serve.url]
    before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), serve.cpu_seconds()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    after, server_after = resource.getrusage(resource.RUSAGE_CHILDREN), serve.cpu_seconds()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    out: dict[str, Any] = json.loads(lines[-1])
    out["client_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out["server_cpu"] = server_after - server_before
    return out


def python_api(db: str, mode: str, seconds: float, threads: int, args: argparse.Namespace,
               run_id: str) -> dict[str, Any]:
    """The same work through the Python API, `threads` threads for `seconds`; requests/s and latencies."""
    from connector.db.engine import make_engine
    from connector.ledger import Ledger
    from connector.ledger.planners import make_request

    ledger = Ledger(make_engine(db), group_commit=True)
    stop = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(threads)]
    items = args.batch_items if mode == "batch" else 1

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            c = (i * 7919 + n) % args.customers
            t0 = time.perf_counter()
            if mode == "balance":
                ledger.balance(f"b{c}", CURRENCY)
            elif mode == "single":
                ledger.post(make_request("consume", f"b{c}", "0.01", CURRENCY, f"py:{run_id}:{i}:{n}"))
            else:
                ledger.post_batch([make_request("consume", f"b{(c + k) % args.customers}", "0.01", CURRENCY,
                                                f"pyb:{run_id}:{i}:{n}:{k}") for k in range(items)])
            lat[i].append(time.perf_counter() - t0)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for part in lat for x in part)
    q = statistics.quantiles(flat, n=100) if len(flat) >= 2 else [flat[0] * 1] * 99
    return {"requests": len(flat), "per_s": len(flat) / elapsed, "items_per_s": len(flat) * items / elapsed,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def consumed(db: str, prefix: str) -> int:
    """Consumption postings whose key starts with `prefix` (the API keeps `api:<Idempotency-Key>`)."""
    from sqlalchemy import func, select

    from connector.db.engine import make_engine
    from connector.ledger.store import postings

    with make_engine(db).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(postings).where(
            postings.c.key.startswith(prefix, autoescape=True))).scalar_one())


def scraped_requests(url: str) -> dict[tuple[str, str], float]:
    """`prepaid_sync_http_requests_total` by (route, status) from the server's `/metrics`."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    return {(s.labels["route"], s.labels["status"]): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "prepaid_sync_http_requests_total"}


def run_backend(db: str, name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement on one database; one row per measurement."""
    key = json.loads(cli(db, "apikey", "create", f"bench-{uuid.uuid4().hex[:6]}", "--scope", "write",
                         "--json"))["key"]
    seed(db, args.customers)
    run_id = uuid.uuid4().hex[:8]
    serve = Serve(db, args.serve_arg or [])
    rows = []
    try:
        wrk(serve, key, "balance", 1, args.clients, args, run_id + "w")  # warm-up: imports, pools, caches
        for mode, clients in (("balance", args.clients), ("single", args.clients),
                              ("batch", args.batch_clients)):
            got = wrk(serve, key, mode, args.seconds, clients, args, f"{run_id}{mode[0]}")
            secs = got["duration_us"] / 1e6
            items = args.batch_items if mode == "batch" else 1
            rows.append({"backend": name, "mode": mode, "clients": clients, **got,
                         "per_s": got["requests"] / secs, "items_per_s": got["requests"] * items / secs,
                         "server_cpu_ms_per_req": 1000 * got["server_cpu"] / max(got["requests"], 1),
                         "client_cpu_share": got["client_cpu"] / secs})
        metrics = scraped_requests(serve.url)
    finally:
        code = serve.stop()
    if code != 0:
        raise SystemExit(f"serve exited {code}")
    for row in rows:
        threads = row["clients"]
        row["python"] = python_api(db, row["mode"], args.seconds, threads, args, run_id)
    single, batch = rows[1], rows[2]
    posted_single = consumed(db, f"api:{run_id}s-")
    posted_batch = consumed(db, f"api:{run_id}b-")
    # A request still in flight when wrk stops is not counted by wrk but may have posted: hence the ranges.
    answered_single = single["requests"] - single["non_2xx"]
    answered_batch = batch["requests"] - batch["non_2xx"]
    checks = {
        "single posts in the database == wrk's 201s (+ at most one in flight per client)":
            answered_single <= posted_single <= answered_single + single["clients"],
        "batch items in the database == wrk's batches x items (+ batches in flight)":
            posted_batch % args.batch_items == 0
            and answered_batch <= posted_batch // args.batch_items <= answered_batch + batch["clients"],
        "/metrics counts the single posts":
            metrics.get(("/api/v1/customers/{customer}/consumptions", "201"), 0) >= single["requests"],
        "no non-2xx answers": all(r["non_2xx"] == 0 and r["socket_errors"] == 0 for r in rows),
    }
    for what, ok in checks.items():
        print(f"  [{name}] check: {what}: {'ok' if ok else 'FAILED'}"
              + ("" if ok else f" (db single {posted_single}, db batch items {posted_batch})"), flush=True)
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    """The table: each figure beside its target and its Python-API figure."""
    print(f"\n{'backend':10} {'measure':9} {'clients':>7} {'HTTP/s':>9} {'target':>8} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'p99<=':>6} {'srv ms/req':>10} {'wrk cpu':>7} | {'Python/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}")
    for r in rows:
        rate = r["items_per_s"] if r["mode"] == "batch" else r["per_s"]
        py = r["python"]
        py_rate = py["items_per_s"] if r["mode"] == "batch" else py["per_s"]
        unit = " items" if r["mode"] == "batch" else ""
        p99_limit = "-" if r["mode"] == "batch" else f"{P99_TARGET_MS:.0f}"
        met = "met" if rate >= TARGETS[r["mode"]] else "NOT met"
        print(f"{r['backend']:10} {r['mode']:9} {r['clients']:>7} {rate:>9,.0f} {TARGETS[r['mode']]:>8,.0f} "
              f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {p99_limit:>6} {r['server_cpu_ms_per_req']:>10.2f} "
              f"{r['client_cpu_share']:>6.0%} | {py_rate:>9,.0f} {py['p50_ms']:>7.1f} {py['p99_ms']:>7.1f}"
              f"   ({met}{unit})")


def main() -> None:
    """Parse arguments, run each backend, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    p.add_argument("--clients", type=int, default=16, help="concurrent connections for single requests")
    p.add_argument("--batch-clients", type=int, default=2, help="concurrent connections for the batch")
    p.add_argument("--batch-items", type=int, default=1000)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--pg", default=os.environ.get("PREPAID_SYNC_TEST_PG",
                                                  "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--serve-arg", action="append", help="extra argument for `serve` (repeatable)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian's package), then run again")
    print(f"api_bench: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load before: {os.getloadavg()}; "
          f"{args.seconds:g} s per measurement", flush=True)
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        rows += with_database(backend, args, lambda db, b=backend: run_backend(db, b, args))
    print(f"load after: {os.getloadavg()}")
    report(rows)


def with_database(backend: str, args: argparse.Namespace,
                  body: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run `body` on a fresh database of `backend` and remove it afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="api-bench-") as folder:
            return body(f"sqlite:///{folder}/bench.db")
    from sqlalchemy import create_engine, text

    from connector.db.engine import resolve_url

    schema = f"apibench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(resolve_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        return body(f"{args.pg}?options=-csearch_path%3D{schema}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
