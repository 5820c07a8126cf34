"""Bulk import benchmark: `ledger import` of the ledger benchmark's file, beside its target and an anchor.

    python bench/import_bench.py                          # 100k customers, 1M entries, SQLite and PostgreSQL
    python bench/import_bench.py --entries 100000 --customers 10000 --backends sqlite

The file is `bench/ledger_bench.py`'s (an opening deposit per customer, then 80 % consumption, 17 %
top-ups, 3 % refunds). Each backend runs in its own process on a fresh database, so peak RSS is that
import's. Printed beside the import rate, from the same process right after the import:
- the target, 50,000 entries/s;
- the anchor: the raw rate of writing as many plain rows (entry-shaped: seven columns, a primary key)
  into a scratch table on the same backend, with the driver's fastest bulk call (SQLite `executemany`,
  PostgreSQL `COPY`), in one transaction. An import writes three to four rows per entry, checks every
  row and plans every drawdown, so it cannot reach the anchor; the ratio shows what the checks cost.
With `--reimport`, the same file is imported a second time (every row answers `exists`, nothing written).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ledger_bench import make_csv  # noqa: E402

TARGET = 50_000  # entries/s, issue 14 item 3


def anchor(engine: object, rows: int) -> float:
    """Plain rows per second into a scratch table: `executemany` (SQLite) or `COPY` (PostgreSQL)."""
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    at = datetime.now(UTC)
    postgres = engine.dialect.name == "postgresql"
    stamp = at if postgres else at.strftime("%Y-%m-%d %H:%M:%S.%f")
    data = [(i, i % 100_000 + 1, "consume", -125, 1000 - i % 900, stamp, f"use:{i}")
            for i in range(1, rows + 1)]
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE bench_anchor (id integer PRIMARY KEY, account_id integer, "
                             "kind varchar(16), amount bigint, balance_after bigint, "
                             f"effective_at {'timestamptz' if postgres else 'text'}, posting_key text)")
        conn.commit()
        started = time.perf_counter()
        with conn.begin():
            if postgres:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                with raw.cursor() as cur, cur.copy("COPY bench_anchor FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in data:
                        copy.write_row(row)
            else:
                conn.exec_driver_sql("INSERT INTO bench_anchor VALUES (?, ?, ?, ?, ?, ?, ?)", data)
        return rows / (time.perf_counter() - started)


def worker(url: str, csv_path: Path, reimport: bool) -> dict[str, float]:
    """Import the file into a fresh database, then measure the anchor; returns the figures."""
    from sqlalchemy import text

    from connector.db.engine import make_engine
    from connector.ledger.importer import Importer

    engine = make_engine(url)
    started = time.perf_counter()
    cpu = time.process_time()
    report = Importer(engine).run(csv_path)
    import_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    assert report.applied and not report.errors, report.errors[:5]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT COUNT(*) FROM entries")).scalar() or 0
    again_s = 0.0
    if reimport:
        started = time.perf_counter()
        again = Importer(engine).run(csv_path)
        again_s = time.perf_counter() - started
        assert again.created == 0 and again.exists == report.created, (again.created, again.exists)
    anchor_per_s = anchor(engine, report.created)
    engine.dispose()
    return {"rows": report.rows, "created": report.created, "entries": entries, "import_s": import_s,
            "cpu_s": cpu_s, "per_s": report.created / import_s, "anchor_per_s": anchor_per_s,
            "again_s": again_s, "peak_rss_mb": rss}


def run_backend(name: str, args: argparse.Namespace, csv_path: Path, tmp: Path) -> dict[str, float]:
    """One worker process per backend (a fresh SQLite file, or a fresh PostgreSQL schema dropped after)."""
    schema = None
    if name == "sqlite":
        url = f"sqlite:///{tmp}/import.db"
    else:
        from sqlalchemy import create_engine, text

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://"))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{args.pg}?options=-csearch_path%3D{schema}"
    cmd = [sys.executable, __file__, "--worker", url, "--csv", str(csv_path)] + (
        ["--reimport"] if args.reimport else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{name} worker failed:\n{exc.stderr}") from None
    finally:
        if schema:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def main() -> None:
    """Parse arguments; write the file; run one worker per backend; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--reimport", action="store_true", help="also time importing the same file again")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.csv), args.reimport)))
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        csv_path = tmp / "postings.csv"
        started = time.perf_counter()
        make_csv(csv_path, args.customers, args.entries)
        print(f"import benchmark: {args.customers:,} customers, {args.entries:,} rows (CSV written in "
              f"{time.perf_counter() - started:.1f}s), python {sys.version.split()[0]}")
        print(f"{'backend':9} {'entries':>9} {'import s':>9} {'cpu s':>7} {'entries/s':>10} {'target':>8} "
              f"{'anchor rows/s':>13} {'of anchor':>9} {'reimport s':>10} {'peak RSS MB':>11}")
        for name in args.backends.split(","):
            r = run_backend(name, args, csv_path, tmp)
            again = f"{r['again_s']:>10.1f}" if args.reimport else f"{'-':>10}"
            print(f"{name:9} {int(r['created']):>9,} {r['import_s']:>9.1f} {r['cpu_s']:>7.1f} "
                  f"{r['per_s']:>10,.0f} "
                  f"{TARGET:>8,} {r['anchor_per_s']:>13,.0f} {r['per_s'] / r['anchor_per_s']:>9.0%} {again} "
                  f"{r['peak_rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
