"""Report benchmark: `report` and `statement --all` over 100,000 customers and 1,000,000 entries.

    python bench/report_bench.py                                  # PostgreSQL, 100k customers, 1M entries
    python bench/report_bench.py --backend sqlite --customers 20000 --entries 200000

The data is imported with the ledger's CSV importer (10 entries per customer on average: two deposits,
one of them expiring within 120 days, then consumption over the last 200 days), plus terms with a
due date for one customer in five. Each measured command runs in its own process (the real CLI), so
its peak RSS is its own; figures are printed as one JSON document at the end. PostgreSQL uses a
fresh schema in --pg (default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_csv(path: Path, customers: int, entries: int, now: datetime, seed: int = 11) -> None:
    """Two deposits per customer, then consumption that never exceeds them, spread over 200 days."""
    rng = random.Random(seed)
    per = max(2, entries // customers)
    with path.open("w") as fh:
        fh.write("op,customer,amount,currency,key,effective_at,expires_at\n")
        for c in range(customers):
            start = now - timedelta(days=200 - rng.randrange(20))
            expires = (now + timedelta(days=rng.randrange(1, 120))).date().isoformat()
            fh.write(f"deposit,c{c:06d},2000.00,CNY,d1:{c},{start.isoformat()},\n")
            fh.write(f"deposit,c{c:06d},1000.00,CNY,d2:{c},{start.isoformat()},{expires}\n")
            for n in range(per - 2):
                at = start + timedelta(days=(n + 1) * 180 / per, minutes=rng.randrange(600))
                fh.write(
                    f"consume,c{c:06d},{rng.randint(100, 30000) / 100:.2f},CNY,u{n}:{c},{at.isoformat()},\n")


def add_terms(url: str, customers: int, now: datetime) -> None:
    """Terms with a due date and an agreed amount for every fifth customer (direct insert: setup only)."""
    from connector.db.engine import make_engine
    from connector.ledger.store import terms as terms_table

    engine = make_engine(url)
    rows = [{"customer_key": f"c{c:06d}", "currency": "CNY", "contract_ref": "", "agreed_amount": 300000,
             "due_date": (now - timedelta(days=200 + (c % 7) - 3)).date(), "refund_policy": "full",
             "refund_fee_pct": "0", "credit_limit": 0, "updated_at": now} for c in range(0, customers, 5)]
    with engine.begin() as conn:
        conn.execute(terms_table.insert(), rows)
    engine.dispose()


_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('peak_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")


def measure(args: list[str], db: str) -> dict[str, float]:
    """Run the CLI in a child process (through a wrapper that reports only that child's peak RSS)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "connector", "--db", db, *args],
        capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    return {"seconds": round(elapsed, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main() -> None:
    """Build the data, run the measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--statement-format", default="html", choices=("html", "csv", "json"))
    opts = parser.parse_args()

    from sqlalchemy import create_engine, text

    from connector.db.engine import make_engine
    from connector.ledger.importer import Importer

    work = Path(tempfile.mkdtemp(prefix="report-bench-"))
    schema = f"rb_{uuid.uuid4().hex[:10]}"
    if opts.backend == "postgres":
        admin = create_engine(opts.pg)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{opts.pg}{'&' if '?' in opts.pg else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{work}/bench.db"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    figures: dict[str, object] = {"backend": opts.backend, "customers": opts.customers}
    try:
        csv_path = work / "bench.csv"
        make_csv(csv_path, opts.customers, opts.entries, now)
        engine = make_engine(url)
        started = time.perf_counter()
        result = Importer(engine).run(csv_path)
        assert result.applied, result.errors[:5]
        figures["entries"] = result.created
        figures["import_seconds"] = round(time.perf_counter() - started, 1)
        engine.dispose()
        add_terms(url, opts.customers, now)
        today = date.today().isoformat()
        figures["report_json"] = measure(
            ["report", "--as-of", today, "-f", "json", "-o",
             str(work / "r.json")], url)
        figures["report_html"] = measure(
            ["report", "--as-of", today, "-f", "html", "-o",
             str(work / "r.html")], url)
        figures["report_past_as_of"] = measure(
            ["report", "--as-of", (date.today() - timedelta(days=60)).isoformat(), "-f", "json", "-o",
             str(work / "r2.json")], url)
        figures["statement_all"] = measure(["statement", "--all", "--out-dir", str(work / "st"), "-f",
                                            opts.statement_format, "--lang", "zh"], url)
        files = list((work / "st").iterdir())
        figures["statement_files"] = len(files)
        figures["statement_bytes"] = sum(f.stat().st_size for f in files)
        figures["report_json_bytes"] = (work / "r.json").stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if opts.backend == "postgres":
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
