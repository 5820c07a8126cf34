"""Benchmark: full sync, settle run, no-change run and a 1% change run through a loopback sandbox.

Seeds N customers in a sandbox in another process (the sandbox seeds contracts and payments with them;
payments are topped up to 2 x N), syncs into a fresh SQLite ledger, and prints per run: seconds (wall and
this process's CPU), API calls against the lower bound (reads: one per page (Zoho 200, Fxiaoke 100), plus
on Zoho one `/deleted` page per stream whose deletion check was due (`--deletion-check-minutes`, default 60
as in the config: the runs here are seconds apart, so only the full run's bookkeeping happens); writes: one
per batch of changed records; tasks counted apart), and the syncing process's peak RSS. Last, the full
sync's seconds and the peak RSS beside the limits of issue 14 (10,000 customers: 10 s and 150 MB;
100,000 customers: 200 MB).

    python bench/sync_bench.py --crm zoho --customers 10000
    python bench/sync_bench.py --crm zoho --customers 10000 --deletion-check-minutes 0
    python bench/sync_bench.py --crm zoho --customers 10000 --runs full --profile /tmp/full.prof
    python bench/sync_bench.py --crm zoho --customers 100000 --runs full
    python bench/sync_bench.py --crm fxiaoke --customers 1000
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import math
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.cli.sync_cmd import engine_for, write_config  # noqa: E402
from connector.config import load_settings  # noqa: E402
from connector.db.engine import make_engine  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _zoho(n: int) -> tuple[Any, str, int, Any, Any]:
    from connector.adapters.zoho.sandbox import ZohoSandbox

    sb = ZohoSandbox(seed=n).start()
    org = sb.org
    pays = org.modules["Prepaid_Payments"]
    base = [r for r in pays.records.values() if (r.get("Account") or {}).get("id")]
    i = 0
    while len(pays.records) < 2 * n:
        src = base[i % len(base)]
        org.insert(pays, {"Name": f"TOP-{i}", "Account": src["Account"], "Amount": Decimal("10.00") + i % 90,
                          "Currency": src.get("Currency"), "Payment_Status": "Received",
                          "Payment_Date": "2025-12-01"}, at=org.now() - 86400)
        i += 1

    def counts() -> dict[str, int]:
        return {
            "customers": len(org.modules["Accounts"].records), "contracts": len(org.modules["Deals"].records),
            "payments": len(pays.records)
        }

    def change(k: int) -> None:
        live = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
        for r in live[:k]:
            org.update(pays, r["id"], {"Amount": Decimal(str(r["Amount"])) + 1})

    return sb, sb.api_domain, 0, counts, change


def _fxiaoke(n: int) -> tuple[Any, str, int, Any, Any]:
    from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox, SandboxConfig

    sb = FxiaokeSandbox(config=SandboxConfig(seed=n, rate_limit=None)).start()
    store = sb.app.store
    admin = sb.app.credentials.open_user_id
    table = store.table("PaymentObj").rows
    base = [
        r for r in table.values()
        if r.get("account_id") and not str(r["payment_amount"]).startswith(("-", "0"))
    ]
    i = 0
    while len(table) < 2 * n:
        src = base[i % len(base)]
        store.create(
            "PaymentObj", {
                "owner": src["owner"], "account_id": src["account_id"], "payment_amount": f"{10 + i % 90}.00",
                "payment_time": src["payment_time"]
            }, admin, raw=True)
        i += 1

    def counts() -> dict[str, int]:
        return {
            k: len(store.table(m).rows)
            for k, m in (("customers", "AccountObj"), ("contracts", "prepay_contract__c"),
                         ("payments", "PaymentObj"), ("consumption", "PrepayDetailObj"))
        }

    def change(k: int) -> None:
        live = [r for r in table.values() if r.get("life_status") == "normal"
                and not str(r["payment_amount"]).startswith(("-", "0"))]
        for r in live[:k]:
            store.update("PaymentObj", r["_id"], {"payment_amount": str(Decimal(r["payment_amount"]) + 1)},
                         admin)

    return sb, sb.base_url, n, counts, change


def _serve(crm: str, n: int, pipe: Connection) -> None:
    """The sandbox process: seed, answer on a loopback port, and obey the bench's commands on `pipe`."""
    logging.disable(logging.WARNING)
    sb, url, _seed, counts, change = (_zoho if crm == "zoho" else _fxiaoke)(n)
    pipe.send((url, counts()))
    while True:
        try:
            cmd, arg = pipe.recv()
        except EOFError:  # the bench has gone
            cmd, arg = "stop", None
        if cmd == "change":
            change(arg)
            pipe.send(None)
        elif cmd == "stop":
            sb.stop()
            try:
                pipe.send(None)
            except OSError:
                pass
            return


class Sandbox:
    """A seeded sandbox in its own process, so the sync's peak RSS is this process's alone."""

    def __init__(self, crm: str, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(crm, n, child), daemon=True)
        self.proc.start()
        child.close()  # the sandbox sees the end of the pipe when this process goes
        self.url, self.counts = self.pipe.recv()

    def change(self, k: int) -> None:
        """Change `k` payments in the CRM."""
        self.pipe.send(("change", k))
        self.pipe.recv()

    def stop(self) -> None:
        """Stop the server and its process."""
        self.pipe.send(("stop", None))
        self.pipe.recv()
        self.proc.join(10)


def _limits(n: int) -> tuple[float | None, float]:
    """The issue's limits for a full sync of `n` customers: seconds (None: none set) and peak RSS MB."""
    return (10.0, 150.0) if n <= 10_000 else (None, 200.0)


def main() -> None:
    """Run the four syncs and print a table, then the full sync's figures beside their limits."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--crm", choices=["zoho", "fxiaoke"], default="zoho")
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--deletion-check-minutes", type=int, default=60,
                    help="Zoho: how often `/deleted` is read per stream (0 = every run)")
    ap.add_argument("--runs", default="full,settle,no-change,1%",
                    help="which runs, in order, comma-separated (the 100,000-customer check needs only full)")
    ap.add_argument("--profile", metavar="FILE", help="write the full run's cProfile stats to FILE")
    ap.add_argument("--progress", type=float, default=0, metavar="SECONDS",
                    help="print the run's stage and this process's peak RSS at most this often (0: never)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the seeded bad records are counted below, not printed
    t0 = time.monotonic()
    base_rss = _rss_mb()
    sb = Sandbox(args.crm, args.customers)
    print(f"seeded {sb.counts} in another process in {time.monotonic() - t0:.1f}s; "
          f"this process before the sync: {base_rss:.0f} MB")
    wanted = args.runs.split(",")
    full_secs: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        write_config(Path(tmp), args.crm, sandbox=sb.url,
                     extra={"deletion_check_minutes": args.deletion_check_minutes})
        engine, _ = engine_for(load_settings(Path(tmp) / "prepaid-sync.toml"), None,
                               make_engine(f"sqlite:///{Path(tmp) / 'prepaid-sync.db'}"))
        engine.overlap = timedelta(seconds=1)
        if args.progress:
            engine.progress = _progress_printer(args.progress)
        batch = engine.mapping.write_batch_size
        page = 100 if args.crm == "fxiaoke" else 200
        task_calls = _count_task_calls(engine.adapter)
        writes_seen = _time_writes(engine.adapter)
        print(f"{'run':<12}{'seconds':>9}{'CPU s':>7}{'pulled':>9}{'reads':>7}{'read LB':>8}{'deleted':>8}"
              f"{'writes':>8}{'write LB':>9}{'task calls':>11}{'RSS MB':>8}")
        for n, (label, k) in enumerate((("full", None), ("settle", 0), ("no-change", 0),
                                        ("1%", args.customers * 2 // 100))):
            if label not in wanted:
                continue
            if k:
                sb.change(k)
            if n:
                # Past the 1 s overlap plus Zoho's 1 s Modified_Time resolution: the previous run's own
                # last writes are not re-read as changes.
                time.sleep(2.1)
            before = engine.adapter.usage()
            cpu = time.process_time()
            start = time.monotonic()
            if args.profile and label == "full":
                prof = cProfile.Profile()
                r = prof.runcall(engine.run)
                prof.dump_stats(args.profile)
            else:
                r = engine.run()
            secs = time.monotonic() - start
            cpu = time.process_time() - cpu
            if label == "full":
                full_secs = secs
            after = engine.adapter.usage()
            calls = after.calls - before.calls
            writes = r.write_calls
            tasks = task_calls[0]
            task_calls[0] = 0
            reads = calls - writes - tasks
            pulled = sum(r.pulled.values())
            # Each stream whose deletion check was due reads at least one `/deleted` page.
            checks = after.by_type.get("deleted:calls", 0) - before.by_type.get("deleted:calls", 0)
            read_lb = sum(max(1, math.ceil(v / page)) for v in r.pulled.values()) + checks
            write_lb = math.ceil(r.records_written / batch)
            print(
                f"{label:<12}{secs:>9.1f}{cpu:>7.1f}{pulled:>9}{reads:>7}{read_lb:>8}{checks:>8}{writes:>8}"
                f"{write_lb:>9}{tasks:>11}{_rss_mb():>8.0f}   status={r.status} deposits={r.deposits_posted} "
                f"consumptions={r.consumptions_posted} reversals={r.reversals_posted} errors={r.error_total}")
            if args.crm == "fxiaoke":
                _print_write_floor(writes_seen)
        engine.adapter.close()
    sb.stop()
    secs_limit, rss_limit = _limits(args.customers)
    if full_secs is not None:
        limit = f"limit {secs_limit:.0f} s" if secs_limit is not None else "no limit set for this size"
        print(f"full sync of {args.customers:,} customers: {full_secs:.1f} s ({limit})")
    print(f"peak RSS of the syncing process: {_rss_mb():.0f} MB (limit {rss_limit:.0f} MB); "
          f"{base_rss:.0f} MB before the sync")


def _progress_printer(every: float) -> Any:
    """A progress observer that prints the stage, how far it is and the peak RSS so far, at most every
    `every` seconds (a long run shows where its time and memory go while it runs)."""
    last = [0.0]

    def show(stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            print(f"  {time.strftime('%H:%M:%S')} {stage} {done}/{total if total is not None else '?'} "
                  f"peak RSS {_rss_mb():.0f} MB", flush=True)

    return show


def _count_task_calls(adapter: Any) -> list[int]:
    """Wrap the adapter's task methods so the calls they spend are counted apart from reads and writes."""
    spent = [0]
    for name in ("create_tasks", "find_tasks", "close_task"):
        inner = getattr(adapter, name)

        def wrapped(*a: Any, _inner: Any = inner, **kw: Any) -> Any:
            before = adapter.usage().calls
            try:
                return _inner(*a, **kw)
            finally:
                spent[0] += adapter.usage().calls - before
        setattr(adapter, name, wrapped)
    return spent


def _time_writes(adapter: Any) -> dict[str, Any]:
    """Wrap `write_fields`: the write phase's span (first call in, last call out) and its calls per path."""
    seen: dict[str, Any] = {"first": None, "last": None, "by_path": {}}
    inner = adapter.write_fields

    def wrapped(*a: Any, **kw: Any) -> Any:
        before = dict(adapter.usage().by_type)
        start = time.monotonic()
        try:
            return inner(*a, **kw)
        finally:
            seen["first"] = start if seen["first"] is None else seen["first"]
            seen["last"] = time.monotonic()
            for path, n in adapter.usage().by_type.items():
                if path != "token" and n > before.get(path, 0):
                    seen["by_path"][path] = seen["by_path"].get(path, 0) + n - before.get(path, 0)
    adapter.write_fields = wrapped
    return seen


def _print_write_floor(seen: dict[str, Any]) -> None:
    """Fxiaoke: the write phase's time against the floor its busiest path's calls set (then reset)."""
    from connector.adapters.fxiaoke.client import DEFAULT_PACE, pace_floor

    if seen["by_path"]:
        path, calls = max(seen["by_path"].items(), key=lambda item: item[1])
        secs = seen["last"] - seen["first"]
        floor = pace_floor(calls)
        ratio = f"{floor / secs:.3f}" if floor else "n/a (within the first free burst)"
        print(f"            write phase: {calls} calls on {path} in {secs:.1f}s; floor {floor:.1f}s "
              f"({DEFAULT_PACE[0]} calls / {DEFAULT_PACE[1]:.0f} s per path, first {DEFAULT_PACE[0]} free); "
              f"floor/elapsed {ratio}")
    seen.update(first=None, last=None, by_path={})


if __name__ == "__main__":
    main()
