"""Several real processes spend the same money at once: exactly the right number succeed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from connector.ledger import Ledger
from connector.ledger.db import make_engine
from connector.ledger.verify import verify

WORKER = Path(__file__).with_name("race_worker.py")
PROCESSES = 6
ATTEMPTS = 5


def race(url: str) -> None:
    engine = make_engine(url)
    ledger = Ledger(engine)
    ledger.deposit("race", "100.00", "CNY", "seed-1")
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, str(WORKER), url, str(start_at), "race", str(ATTEMPTS), "7.00",
                               f"p{i}", "shared-key"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2])
             for i in range(PROCESSES)]
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
