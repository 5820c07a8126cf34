"""Benchmark: full sync, settle run, no-change run and a 1% change run through a loopback sandbox.

Seeds N customers (the sandbox seeds contracts and payments with them; payments are topped up to
2 x N), syncs into a fresh SQLite ledger, and prints per run: seconds, API calls against the lower
bound (reads: one per page (Zoho 200, Fxiaoke 100), plus on Zoho one `/deleted` page per stream whose
deletion check was due (`--deletion-check-minutes`, default 60 as in the config: the runs here are
seconds apart, so only the full run's bookkeeping happens); writes: one per batch of changed records;
tasks counted apart), and peak RSS.

    python bench/sync_bench.py --crm zoho --customers 10000
    python bench/sync_bench.py --crm zoho --customers 10000 --deletion-check-minutes 0
    python bench/sync_bench.py --crm fxiaoke --customers 10000
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
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


def main() -> None:
    """Run the four syncs and print a table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--crm", choices=["zoho", "fxiaoke"], default="zoho")
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--deletion-check-minutes", type=int, default=60,
                    help="Zoho: how often `/deleted` is read per stream (0 = every run)")
    args = ap.parse_args()
    t0 = time.monotonic()
    sb, url, _seed, counts, change = (_zoho if args.crm == "zoho" else _fxiaoke)(args.customers)
    print(f"seeded {counts()} in {time.monotonic() - t0:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        write_config(Path(tmp), args.crm, sandbox=url,
                     extra={"deletion_check_minutes": args.deletion_check_minutes})
        engine, _ = engine_for(load_settings(Path(tmp) / "prepaid-sync.toml"), None,
                               make_engine(f"sqlite:///{Path(tmp) / 'prepaid-sync.db'}"))
        engine.overlap = timedelta(seconds=1)
        batch = engine.mapping.write_batch_size
        page = 100 if args.crm == "fxiaoke" else 200
        task_calls = _count_task_calls(engine.adapter)
        writes_seen = _time_writes(engine.adapter)
        print(f"{'run':<12}{'seconds':>9}{'pulled':>9}{'reads':>7}{'read LB':>8}{'deleted':>8}{'writes':>8}"
              f"{'write LB':>9}{'task calls':>11}{'RSS MB':>8}")
        for label, k in (("full", None), ("settle", 0), ("no-change", 0), ("1% change",
                                                                           args.customers * 2 // 100)):
            if k:
                change(k)
            if label != "full":
                # Past the 1 s overlap plus Zoho's 1 s Modified_Time resolution: the previous run's own
                # last writes are not re-read as changes.
                time.sleep(2.1)
            before = engine.adapter.usage()
            start = time.monotonic()
            r = engine.run()
            secs = time.monotonic() - start
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
                f"{label:<12}{secs:>9.1f}{pulled:>9}{reads:>7}{read_lb:>8}{checks:>8}{writes:>8}{write_lb:>9}"
                f"{tasks:>11}{_rss_mb():>8.0f}   status={r.status} deposits={r.deposits_posted} "
                f"consumptions={r.consumptions_posted} reversals={r.reversals_posted} errors={r.error_total}")
            if args.crm == "fxiaoke":
                _print_write_floor(writes_seen)
        engine.adapter.close()
    sb.stop()


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
