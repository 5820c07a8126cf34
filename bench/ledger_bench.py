"""Ledger benchmark: bulk import, single durable postings, listing all balances, verify, peak RSS.

    python bench/ledger_bench.py                       # 100k customers, 1M entries, SQLite and PostgreSQL
    python bench/ledger_bench.py --entries 200000 --customers 20000 --backends sqlite

Each backend runs in its own process so its peak RSS is its own. PostgreSQL uses a fresh schema in
the database named by --pg (default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
Prints its figures; targets (2-core machine): import >= 20,000 entries/s, single postings >= 1,000/s,
all balances <= 1 s, peak RSS <= 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_csv(path: Path, customers: int, entries: int, seed: int = 7) -> None:
    """A deterministic file: one opening deposit per customer, then consumption, top-ups and refunds."""
    rng = random.Random(seed)
    with path.open("w") as fh:
        fh.write("op,customer,amount,currency,key,expires_at\n")
        for c in range(customers):
            expires = "2099-12-31" if c % 5 == 0 else ""
            fh.write(f"deposit,bench:{c},1000.00,CNY,open:{c},{expires}\n")
        for n in range(entries - customers):
            c = rng.randrange(customers)
            roll = rng.random()
            if roll < 0.80:
                fh.write(f"consume,bench:{c},{rng.randint(1, 999) / 100:.2f},CNY,use:{n},\n")
            elif roll < 0.97:
                fh.write(f"deposit,bench:{c},{rng.randint(10, 500)}.00,CNY,top:{n},\n")
            else:
                fh.write(f"refund,bench:{c},{rng.randint(1, 99) / 100:.2f},CNY,ref:{n},\n")


def worker(url: str, csv_path: Path, singles: int) -> dict[str, float]:
    """Run every measurement against one database; returns the figures."""
    from sqlalchemy import text

    from connector.errors import LedgerRuleError
    from connector.ledger import Ledger
    from connector.db.engine import make_engine
    from connector.ledger.importer import Importer
    from connector.ledger.verify import verify

    engine = make_engine(url)
    ledger = Ledger(engine)
    started = time.perf_counter()
    report = Importer(engine).run(csv_path)
    import_s = time.perf_counter() - started
    assert report.applied and not report.errors, report.errors[:5]
    with engine.connect() as conn:
        entry_count = conn.execute(text("SELECT COUNT(*) FROM entries")).scalar() or 0

    # Let the operating system write the import's dirty pages out first: otherwise the fsyncs of the
    # single postings below queue behind hundreds of MB of writeback and measure the import, not them.
    os.sync()
    rng = random.Random(11)
    customers = report.created and int(
        engine.connect().execute(text("SELECT COUNT(*) FROM accounts")).scalar() or 0)
    started = time.perf_counter()
    refused = 0
    for n in range(singles):
        c = rng.randrange(customers)
        try:
            if n % 4 == 0:
                ledger.deposit(f"bench:{c}", "25.00", "CNY", f"single-dep:{n}")
            else:
                ledger.consume(f"bench:{c}", "1.25", "CNY", f"single-use:{n}")
        except LedgerRuleError:
            refused += 1
    single_s = time.perf_counter() - started

    started = time.perf_counter()
    total = 0
    listed = 0
    for view in ledger.accounts():
        total += view.balance
        listed += 1
    balances_s = time.perf_counter() - started

    started = time.perf_counter()
    check = verify(engine)
    verify_s = time.perf_counter() - started
    assert check.ok, check.problems[:5]
    engine.dispose()
    return {"rows": report.rows, "entries": entry_count, "import_s": import_s,
            "import_entries_per_s": report.created / import_s, "singles": singles, "refused": refused,
            "single_per_s": singles / single_s, "accounts": listed, "balances_s": balances_s,
            "verify_s": verify_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_backend(name: str, args: argparse.Namespace, csv_path: Path, tmp: Path) -> dict[str, float]:
    """Start a worker process for one backend and collect its JSON figures."""
    schema = None
    if name == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        from sqlalchemy import create_engine, text

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://"))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{args.pg}?options=-csearch_path%3D{schema}"
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", url, "--csv", str(csv_path),
                              "--single", str(args.single)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{name} worker failed:\n{exc.stderr}") from None
    finally:
        if schema:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def main() -> None:
    """Parse arguments; run the workers; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=5_000, help="single durable postings to time")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.csv), args.single)))
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        csv_path = tmp / "postings.csv"
        started = time.perf_counter()
        make_csv(csv_path, args.customers, args.entries)
        print(f"ledger benchmark: {args.customers:,} customers, {args.entries:,} postings "
              f"(CSV written in {time.perf_counter() - started:.1f}s), python {sys.version.split()[0]}")
        header = (f"{'backend':9} {'entries':>9} {'import s':>9} {'import/s':>9} {'single/s':>9} "
                  f"{'balances s':>10} {'verify s':>9} {'peak RSS MB':>11}")
        print(header)
        for name in args.backends.split(","):
            r = run_backend(name, args, csv_path, tmp)
            print(
                f"{name:9} {int(r['entries']):>9,} {r['import_s']:>9.1f} {r['import_entries_per_s']:>9,.0f} "
                f"{r['single_per_s']:>9,.0f} {r['balances_s']:>10.2f} {r['verify_s']:>9.1f} "
                f"{r['peak_rss_mb']:>11.0f}   ({int(r['accounts']):,} accounts; {int(r['singles']):,} single "
                f"postings, {int(r['refused'])} refused)", flush=True)


if __name__ == "__main__":
    main()
