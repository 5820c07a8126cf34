"""Report benchmark: `report` and `statement --all` over 100,000 customers and 1,000,000 entries.

    python bench/report_bench.py                                  # PostgreSQL, 100k customers, 1M entries
    python bench/report_bench.py --backend sqlite --customers 20000 --entries 200000
    python bench/report_bench.py --keep i14r                      # keep the built database, reuse it
    python bench/report_bench.py --keep i14r --only report_json   # one step

Limits (issue 14.5): `report -f json` <= 5 s and <= 200 MB, `statement --all` <= 30 s; each figure is
printed beside its limit, with the CPU seconds of the command's own processes.

The data is imported with the ledger's CSV importer (10 entries per customer on average: two deposits,
one of them expiring within 120 days, then consumption over the last 200 days), plus terms with a
due date for one customer in five. Each measured command runs in its own process (the real CLI), so
its peak RSS is its own; figures are printed as one JSON document at the end. PostgreSQL uses a
fresh schema in --pg (default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards, unless
--keep names one to keep (`rb_keep_NAME`; SQLite: /tmp/report-bench-NAME.db); the output's `data` says
how the data was built and whether it was reused.
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
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print('peak_kb', u.ru_utime + u.ru_stime, u.ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")


def measure(args: list[str], db: str) -> dict[str, float]:
    """Run the CLI in a child process (through a wrapper that reports only its CPU time and peak RSS)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "connector", "--db", db, *args],
        capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    _, cpu, peak_kb = proc.stderr.strip().splitlines()[-1].split()
    # cpu: the command's own processes (not the database server's); on a busy machine it shows the work
    # better than the wall time. peak RSS: the largest of those processes (with --jobs, each one's own).
    return {"seconds": round(elapsed, 2), "cpu_seconds": round(float(cpu), 2),
            "peak_rss_mb": round(int(peak_kb) / 1024, 1)}


LIMITS = {"report_json": (5.0, 200.0), "report_html": (None, None), "report_past_as_of": (None, None),
          "statement_all": (30.0, None)}


def build(url: str, customers: int, entries: int) -> dict[str, object]:
    """Import the data set into `url`; returns how it was built."""
    from connector.db.engine import make_engine
    from connector.ledger.importer import Importer

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    work = Path(tempfile.mkdtemp(prefix="report-bench-csv-"))
    try:
        csv_path = work / "bench.csv"
        make_csv(csv_path, customers, entries, now)
        engine = make_engine(url)
        started = time.perf_counter()
        result = Importer(engine).run(csv_path)
        assert result.applied, result.errors[:5]
        seconds = round(time.perf_counter() - started, 1)
        engine.dispose()
        add_terms(url, customers, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"customers": customers, "entries": result.created, "import_seconds": seconds,
            "built_at": now.isoformat(), "built_by": "ledger CSV importer (connector.ledger.importer)"}


def _meta(url: str, doc: dict[str, object] | None = None) -> dict[str, object] | None:
    """Read (or, with `doc`, write) how a kept database was built, in a `report_bench_built` table."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if doc is not None:
                conn.execute(text("CREATE TABLE report_bench_built (doc TEXT)"))
                conn.execute(text("INSERT INTO report_bench_built VALUES (:d)"), {"d": json.dumps(doc)})
                return doc
            try:
                found = conn.execute(text("SELECT doc FROM report_bench_built")).scalar()
            except Exception:  # no such table: not built (or built by an older bench)
                return None
            return json.loads(found) if found else None
    finally:
        engine.dispose()


def _verdict(name: str, fig: dict[str, float]) -> dict[str, object]:
    seconds, mb = LIMITS.get(name, (None, None))
    out: dict[str, object] = dict(fig)
    if seconds is not None:
        out["seconds_limit"] = seconds
    if mb is not None:
        out["peak_rss_mb_limit"] = mb
    out["within_limits"] = ((seconds is None or fig["seconds"] <= seconds)
                            and (mb is None or fig["peak_rss_mb"] <= mb))
    return out


def main() -> None:
    """Build (or reuse) the data, run the measurements, print the figures beside their limits."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--statement-format", default="html", choices=("html", "csv", "json"))
    parser.add_argument("--keep", metavar="NAME",
                        help="keep the built database (PostgreSQL schema rb_keep_NAME, or SQLite file "
                             "/tmp/report-bench-NAME.db) and reuse it when it already holds this data set")
    parser.add_argument("--only", default="report_json,report_html,report_past_as_of,statement_all",
                        help="comma-separated steps to measure")
    parser.add_argument("--out", type=Path, help="keep the outputs in this directory (else a temp dir)")
    parser.add_argument("--statement-jobs", type=int, help="pass --jobs N to statement --all")
    opts = parser.parse_args()

    from sqlalchemy import create_engine, text

    work = opts.out or Path(tempfile.mkdtemp(prefix="report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    schema = f"rb_keep_{opts.keep}" if opts.keep else f"rb_{uuid.uuid4().hex[:10]}"
    admin = create_engine(opts.pg) if opts.backend == "postgres" else None
    if admin is not None:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        url = f"{opts.pg}{'&' if '?' in opts.pg else '?'}options=-csearch_path%3D{schema}"
    else:
        db = Path(f"/tmp/report-bench-{opts.keep}.db") if opts.keep else work / "bench.db"
        url = f"sqlite:///{db}"
    figures: dict[str, object] = {"backend": opts.backend}
    try:
        built = _meta(url) if opts.keep else None
        if built and built["customers"] == opts.customers and built["entries"] == opts.entries:
            figures["data"] = dict(built, reused=True)
        elif built:
            raise SystemExit(f"kept database {opts.keep} holds another data set: {built}; pick another name")
        else:
            figures["data"] = _meta(url, build(url, opts.customers, opts.entries))
        steps = set(opts.only.split(","))
        today = date.today().isoformat()
        runs = {
            "report_json": ["report", "--as-of", today, "-f", "json", "-o", str(work / "r.json")],
            "report_html": ["report", "--as-of", today, "-f", "html", "-o", str(work / "r.html")],
            "report_past_as_of": ["report", "--as-of", (date.today() - timedelta(days=60)).isoformat(),
                                  "-f", "json", "-o", str(work / "r2.json")],
            "statement_all": ["statement", "--all", "--out-dir", str(work / "st"), "-f",
                              opts.statement_format, "--lang", "zh"]
            + (["--jobs", str(opts.statement_jobs)] if opts.statement_jobs else []),
        }
        shutil.rmtree(work / "st", ignore_errors=True)
        for name, args in runs.items():
            if name in steps:
                figures[name] = _verdict(name, measure(args, url))
        if "statement_all" in steps:
            files = list((work / "st").iterdir())
            figures["statement_files"] = len(files)
            figures["statement_bytes"] = sum(f.stat().st_size for f in files)
        if "report_json" in steps:
            figures["report_json_bytes"] = (work / "r.json").stat().st_size
    finally:
        if opts.out is None:
            shutil.rmtree(work, ignore_errors=True)
        if admin is not None:
            if not opts.keep:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
