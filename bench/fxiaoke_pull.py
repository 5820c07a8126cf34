"""Benchmark: full pull of N Fxiaoke customers from a sandbox in another process, throttling on.

Prints, per N: API calls against the lower bound (one per 100 records, plus the token), records/s,
time lost to throttling (client pacing + retry sleeps), the elapsed time against the floor the vendor's
limit sets (100 calls / 20 s per path, a sliding window: the first 100 calls free, then 5 per second; the
floor is for the busiest path's calls), and the puller's peak RSS.
Run: python bench/fxiaoke_pull.py --records 50000 --rss-points 5000,20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from connector.adapters.fxiaoke.client import DEFAULT_PACE, pace_floor


def start_sandbox(n: int, rate_limit: int, fail_rate: float) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start `serve` in a child process and read its JSON line."""
    code = ("from connector.adapters.fxiaoke.sandbox import serve; "
            f"serve(seed={n}, rate_limit={rate_limit}, fail_rate={fail_rate})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def worker(info: dict[str, str], expected: int) -> dict[str, Any]:
    """Pull every customer once; count without keeping records (the client checks _id strictly increases)."""
    from connector.adapters.fxiaoke import (DEFAULT_SPECS, FxiaokeAdapter, FxiaokeAuth, FxiaokeClient,
                                            FxiaokeCredentials)
    from connector.domain import Entity

    auth = FxiaokeAuth(info["base_url"],
                       FxiaokeCredentials(info["app_id"], info["app_secret"], info["permanent_code"]))
    client = FxiaokeClient(info["base_url"], auth, open_user_id=info["open_user_id"])
    adapter = FxiaokeAdapter(client)
    started = time.perf_counter()
    count = 0
    for _ in adapter.stream(DEFAULT_SPECS[Entity.CUSTOMER]):
        count += 1
    elapsed = time.perf_counter() - started
    return {
        "records": count, "expected": expected, "elapsed": elapsed, "calls": client.stats.calls,
        "token_calls": client.token_calls, "retries": client.stats.retries,
        "throttled": client.stats.throttled, "paced": client.paced_seconds,
        "retry_sleep": client.stats.retry_sleep, "busiest_path_calls": max(client.stats.by_path.values()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    }


def run(n: int, rate_limit: int, fail_rate: float) -> dict[str, Any]:
    """One measured pull in a fresh puller process against a fresh sandbox process."""
    proc, info = start_sandbox(n, rate_limit, fail_rate)
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(info), "--records", str(n)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    """Parse arguments and print the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rss-points", default="5000,20000", help="smaller N to show RSS is flat")
    parser.add_argument("--rate-limit", type=int, default=100, help="sandbox calls per 20 s per path")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.records)))
        return
    sizes = sorted({int(x) for x in args.rss_points.split(",") if x} | {args.records})
    print(f"fxiaoke full pull, sandbox in another process, rate limit {args.rate_limit}/20s per path, "
          f"fail rate {args.fail_rate}")
    print(f"vendor limit {DEFAULT_PACE[0]} calls / {DEFAULT_PACE[1]:.0f} s per path; floor = the least time "
          "the busiest path's calls can take under it (n/a: all within the first free burst)")
    print(f"{'N':>7} {'got':>7} {'calls':>6} {'bound':>6} {'rec/s':>8} {'elapsed s':>9} {'floor s':>8} "
          f"{'floor/elapsed':>13} {'throttle s':>10} {'retries':>7} {'peak RSS MB':>11}")
    for n in sizes:
        r = run(n, args.rate_limit, args.fail_rate)
        bound = n // 100 + 3  # queries (the last one short) + the token + one directory read (owner names)
        calls = r["calls"] + r["token_calls"]
        lost = r["paced"] + r["retry_sleep"]
        floor = pace_floor(r["busiest_path_calls"])
        ratio = f"{floor / r['elapsed']:.3f}" if floor else "n/a"
        print(f"{n:>7} {r['records']:>7} {calls:>6} {bound:>6} {r['records'] / r['elapsed']:>8.0f} "
              f"{r['elapsed']:>9.1f} {floor:>8.1f} {ratio:>13} {lost:>10.1f} {r['retries']:>7} "
              f"{r['peak_rss_mb']:>11.1f}")
        if r["records"] != n:
            print(f"  MISMATCH: expected {n} records, got {r['records']}")


if __name__ == "__main__":
    main()
