"""Posting benchmark: durable postings on a large ledger, each beside the limit measured in the same run.

    python bench/posting_bench.py                          # 100k customers, 1M entries, SQLite and PostgreSQL
    python bench/posting_bench.py --cache ~/.cache/prepaid-bench   # reuse the imported database between runs
    python bench/posting_bench.py --entries 200000 --customers 20000 --backends sqlite --profile

For each backend, in one process and on the same disk and server:
1. the raw rate of one-row durable commits (SQLite: WAL, the ledger's `synchronous` setting, one INSERT
   per transaction, on a file beside the ledger's; PostgreSQL: `synchronous_commit=on`, one INSERT per
   transaction): the limit a single poster can approach;
2. single durable postings/s on the imported ledger (a quarter deposits, the rest consumptions of random
   customers, one `Ledger.post` each), and that as a fraction of (1); with the pages (SQLite WAL frames)
   or WAL bytes (PostgreSQL) each posting writes;
3. 16 concurrent posters (threads of one process) through the group commit (`Ledger(group_commit=True)`),
   postings/s and the ratio to (2); and the same 16 threads on the plain `Ledger` for comparison.

The ledger is built by `ledger import` of the CSV `ledger_bench.py` writes. With --cache DIR the built
SQLite file, or a PostgreSQL template database, is kept (keyed by size and schema revision) and copied
for each run; the output says how the database was built.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
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

from ledger_bench import make_csv  # noqa: E402  (bench/ is on sys.path: this script's folder)


def raw_commits_sqlite(path: Path, count: int) -> float:
    """One-row durable commits/s on a SQLite file in WAL with the ledger's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE IF NOT EXISTS raw_commit (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    started = time.perf_counter()
    for n in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw_commit (v) VALUES (?)", (n,))
        conn.execute("COMMIT")
    rate = count / (time.perf_counter() - started)
    conn.close()
    return rate


def raw_commits_pg(dsn: str, count: int) -> float:
    """One-row durable commits/s on PostgreSQL (`synchronous_commit=on`, autocommit INSERTs)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("CREATE TABLE IF NOT EXISTS raw_commit (id bigserial PRIMARY KEY, v integer NOT NULL)")
        started = time.perf_counter()
        for n in range(count):
            conn.execute("INSERT INTO raw_commit (v) VALUES (%s)", (n,))
        return count / (time.perf_counter() - started)


def one_posting(ledger: Any, rng: random.Random, customers: int, tag: str, n: int) -> bool:
    """A deposit (one in four) or a consumption of a random customer; False when refused."""
    from connector.errors import LedgerRuleError

    c = rng.randrange(customers)
    try:
        if n % 4 == 0:
            ledger.deposit(f"bench:{c}", "25.00", "CNY", f"{tag}-dep:{n}")
        else:
            ledger.consume(f"bench:{c}", "1.25", "CNY", f"{tag}-use:{n}")
        return True
    except LedgerRuleError:
        return False


def posters(ledger: Any, threads: int, per_thread: int, customers: int, tag: str) -> float:
    """`threads` threads posting `per_thread` each, started together; postings/s over all of them."""
    start = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def run(t: int) -> None:
        rng = random.Random(1000 + t)
        start.wait()
        try:
            for n in range(per_thread):
                one_posting(ledger, rng, customers, f"{tag}{t}", n)
        except BaseException as exc:  # reported after the run
            failures.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return threads * per_thread / elapsed


def wal_frames(path: Path) -> int:
    """Frames (page images) in a SQLite WAL file."""
    wal = Path(f"{path}-wal")
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    return max(0, (wal.stat().st_size - 32) // (page + 24)) if wal.exists() else 0


def pages_per_posting_sqlite(url: str, path: Path, customers: int, count: int) -> float:
    """WAL frames written per posting (the pages each commit dirties), automatic checkpoints off."""
    from sqlalchemy import event

    from connector.db.engine import make_engine
    from connector.ledger import Ledger

    engine = make_engine(url, nullpool=True)
    event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA wal_autocheckpoint=0"))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.rollback()
    ledger = Ledger(engine)
    rng = random.Random(5)
    for n in range(count):
        one_posting(ledger, rng, customers, "pages", n)
    frames = wal_frames(path)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.rollback()
    engine.dispose()
    return frames / count


def pg_wal_lsn(engine: Any) -> int:
    """The server's current WAL position in bytes."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar() or 0)


def worker(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement on one backend's imported ledger."""
    from sqlalchemy import text

    from connector.db.engine import make_engine, sqlite_path
    from connector.ledger import Ledger

    engine = make_engine(url)
    with engine.connect() as conn:
        customers = int(conn.execute(text("SELECT COUNT(*) FROM accounts")).scalar() or 0)
        entries = int(conn.execute(text("SELECT COUNT(*) FROM entries")).scalar() or 0)
    os.sync()  # the import's (or the copy's) writeback must not queue in front of the fsyncs timed here
    path = sqlite_path(url)
    out: dict[str, Any] = {"customers": customers, "entries": entries}
    if path is not None:
        out["raw_per_s"] = raw_commits_sqlite(path.with_name("raw-commit.db"), args.raw)
    else:
        out["raw_per_s"] = raw_commits_pg(url.replace("postgresql+psycopg://", "postgresql://"), args.raw)

    ledger = Ledger(engine)
    lsn = pg_wal_lsn(engine) if path is None else 0
    profile: Any = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    started = time.perf_counter()
    rng = random.Random(11)
    refused = sum(not one_posting(ledger, rng, customers, "single", n) for n in range(args.single))
    out["single_per_s"] = args.single / (time.perf_counter() - started)
    if profile is not None:
        profile.disable()
        import pstats

        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(18)
    out["refused"] = refused
    if path is None:
        out["wal_bytes_per_posting"] = (pg_wal_lsn(engine) - lsn) / args.single
    else:
        out["pages_per_posting"] = pages_per_posting_sqlite(url, path, customers, 300)

    per_thread = max(1, args.group // args.posters)
    if args.group <= 0:
        engine.dispose()
        return out
    grouped = Ledger(engine, group_commit=True)
    out["group_per_s"] = posters(grouped, args.posters, per_thread, customers, "group")
    assert grouped.group is not None
    out["group_size"] = grouped.group.posted / max(1, grouped.group.groups)
    out["plain_per_s"] = posters(ledger, args.posters, max(1, per_thread // 2), customers, "plain")
    engine.dispose()
    return out


def _pg_admin(args: argparse.Namespace) -> Any:
    from sqlalchemy import create_engine

    return create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://"),
                         isolation_level="AUTOCOMMIT")


def _pg_url(args: argparse.Namespace, database: str) -> str:
    return args.pg.rsplit("/", 1)[0] + "/" + database


def _import(url: str, csv_path: Path) -> float:
    """Build the ledger at `url` with `ledger import`; seconds taken."""
    from connector.db.engine import make_engine
    from connector.ledger.importer import Importer

    engine = make_engine(url)
    started = time.perf_counter()
    report = Importer(engine).run(csv_path)
    assert report.applied and not report.errors, report.errors[:5]
    engine.dispose()
    return time.perf_counter() - started


def build(name: str, args: argparse.Namespace, tmp: Path, csv: Callable[[], Path]) -> tuple[str, str]:
    """The URL of a fresh copy of the benchmark ledger on backend `name`, and how it was built."""
    from sqlalchemy import text

    from connector.db.engine import head_revision

    key = f"{args.customers}c-{args.entries}e-r{head_revision()}"
    cache = Path(args.cache).expanduser() if args.cache else None
    note_file = cache / f"{name}-{key}.json" if cache else None
    if name == "sqlite":
        target = tmp / "bench.db"
        kept = cache / f"ledger-{key}.db" if cache else None
        if kept is not None and kept.exists() and note_file is not None and note_file.exists():
            shutil.copyfile(kept, target)
            return f"sqlite:///{target}", "copied from cache: " + json.loads(note_file.read_text())["how"]
        seconds = _import(f"sqlite:///{target}", csv())
        how = f"`ledger import` in {seconds:.1f}s on {time.strftime('%Y-%m-%d %H:%M')}"
        if kept is not None and note_file is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, kept)
            note_file.write_text(json.dumps({"how": how}))
        return f"sqlite:///{target}", how
    admin = _pg_admin(args)
    run_db = f"psbench_run_{uuid.uuid4().hex[:8]}"
    template = "psbench_" + key.replace("-", "_").lower()
    with admin.connect() as conn:
        have = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": template}).first()
    if cache is not None and have is not None and note_file is not None and note_file.exists():
        how = "copied from template database: " + json.loads(note_file.read_text())["how"]
    else:
        with admin.connect() as conn:
            if have is not None:
                conn.execute(text(f"DROP DATABASE {template}"))
            conn.execute(text(f"CREATE DATABASE {template}"))
        seconds = _import(_pg_url(args, template), csv())
        how = f"`ledger import` in {seconds:.1f}s on {time.strftime('%Y-%m-%d %H:%M')}"
        if note_file is not None:
            note_file.parent.mkdir(parents=True, exist_ok=True)
            note_file.write_text(json.dumps({"how": how}))
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {run_db} TEMPLATE {template}"))
        if cache is None:
            conn.execute(text(f"DROP DATABASE {template}"))
    admin.dispose()
    return _pg_url(args, run_db), how


def run_backend(name: str, args: argparse.Namespace, tmp: Path, csv: Callable[[], Path]) -> dict[str, Any]:
    """Build (or copy) the ledger, then measure it in a worker process of its own."""
    from sqlalchemy import text

    url, how = build(name, args, tmp, csv)
    try:
        cmd = [sys.executable, __file__, "--worker", url] + [a for a in sys.argv[1:] if a != "--worker"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if args.profile:
            sys.stderr.write(out.stderr)
        if out.returncode != 0:
            raise SystemExit(f"{name} worker failed:\n{out.stderr}")
        return {**json.loads(out.stdout.strip().splitlines()[-1]), "how": how}
    finally:
        if name != "sqlite":
            admin = _pg_admin(args)
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)"))
            admin.dispose()


def main() -> None:
    """Parse arguments; build, measure and print each backend."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--raw", type=int, default=2_000, help="one-row commits to time (the limit)")
    parser.add_argument("--single", type=int, default=3_000, help="single durable postings to time")
    parser.add_argument("--posters", type=int, default=16, help="concurrent posters (threads)")
    parser.add_argument("--group", type=int, default=8_000, help="postings the concurrent posters make")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--cache", help="keep the built ledger here (SQLite file; PostgreSQL template)")
    parser.add_argument("--profile", action="store_true", help="cProfile the single postings (to stderr)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        made: list[Path] = []

        def csv() -> Path:
            if not made:
                made.append(tmp / "postings.csv")
                make_csv(made[0], args.customers, args.entries)
            return made[0]

        load = os.getloadavg()
        print(f"posting benchmark: {args.customers:,} customers, {args.entries:,} postings imported; "
              f"python {sys.version.split()[0]}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        for name in args.backends.split(","):
            r = run_backend(name, args, tmp, csv)
            written = (f"{r['pages_per_posting']:.1f} WAL pages/posting" if "pages_per_posting" in r
                       else f"{r['wal_bytes_per_posting'] / 1024:.1f} KB WAL/posting")
            print(f"{name}: {int(r['entries']):,} entries, {int(r['customers']):,} accounts; "
                  f"built by {r['how']}\n"
                  f"  raw one-row durable commits/s   {r['raw_per_s']:>8,.0f}   (the limit)\n"
                  f"  single durable postings/s       {r['single_per_s']:>8,.0f}   "
                  f"= {r['single_per_s'] / r['raw_per_s']:.2f} of the limit (target >= 0.5); {written}; "
                  f"{int(r['refused'])} refused", flush=True)
            if "group_per_s" not in r:
                continue
            print(f"  {args.posters} posters, group commit/s   {r['group_per_s']:>8,.0f}   "
                  f"= {r['group_per_s'] / r['single_per_s']:.1f}x single (target >= 5x); "
                  f"{r['group_size']:.1f} postings per commit\n"
                  f"  {args.posters} posters, plain Ledger/s   {r['plain_per_s']:>8,.0f}   "
                  f"= {r['plain_per_s'] / r['single_per_s']:.1f}x single (no group commit, for comparison)",
                  flush=True)
        load = os.getloadavg()
        print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
