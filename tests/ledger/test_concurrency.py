"""Several real processes spend the same money at once: exactly the right number succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.ledger.verify import verify

WORKER = Path(__file__).with_name("race_worker.py")
ROOT = Path(__file__).parents[2]
PROCESSES = 6
ATTEMPTS = 5


def race(url: str) -> None:
    engine = make_engine(url)
    ledger = Ledger(engine)
    ledger.deposit("race", "100.00", "CNY", "seed-1")
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen([
            sys.executable,
            str(WORKER), url,
            str(start_at), "race",
            str(ATTEMPTS), "7.00", f"p{i}", "shared-key"
        ], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}) for i in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    created = sum(r["created"] for r in results)
    assert created == 14  # 14 x 7.00 = 98.00 of 100.00; the 15th would overdraw
    assert sum(r["refused"] for r in results) == PROCESSES * ATTEMPTS - 14
    assert sorted(r["shared"] for r in results) == ["created"] + ["exists"] * (PROCESSES - 1)
    assert ledger.balance("race", "CNY")[0].balance == Decimal("2.00")
    assert ledger.balance("race:shared", "CNY")[0].balance == Decimal("1.00")
    report = verify(engine)
    assert report.ok, report.problems
    engine.dispose()


@pytest.mark.postgres
def test_processes_race_for_the_last_money_on_postgres(pg_url: str) -> None:
    race(pg_url)


def test_processes_race_for_the_last_money_on_sqlite(tmp_path: Path) -> None:
    race(f"sqlite:///{tmp_path}/race.db")


def test_processes_creating_one_fresh_sqlite_database_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    code = ("import sys, time; time.sleep(max(0, float(sys.argv[1]) - time.time())); "
            "from connector.ledger import Ledger; "
            "print(Ledger.open(sys.argv[2]).deposit('c', '1.00', 'CNY', 'k' + sys.argv[3]).status)")
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(start_at), url,
                          str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=Path(__file__).parents[2]) for i in range(4)
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err[-500:] for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["created"] * 4
    ledger = Ledger(make_engine(url))
    assert ledger.balance("c", "CNY")[0].balance == Decimal("4.00")
