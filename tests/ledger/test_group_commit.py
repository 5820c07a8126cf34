"""Issue 14.2: sixteen concurrent posters through the group commit; the double-spend rules hold.

The races mirror test_concurrency.py (100.00 deposited, 7.00 spent at a time: exactly 14 succeed, one
shared key is created once) at 16-way concurrency: 16 threads of one process, and 4 processes of 4
threads. Starts are barriers and stdin signals, never timers; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.db.engine import make_engine
from connector.errors import IdempotencyConflict, InsufficientBalance, NotFound
from connector.ledger import Ledger
from connector.ledger.planners import make_request
from connector.ledger.verify import verify

WORKER = Path(__file__).with_name("group_race_worker.py")
ROOT = Path(__file__).parents[2]
POSTERS = 16
ATTEMPTS = 5


def _check_race(ledger: Ledger, created: int, refused: int, shared: list[str]) -> None:
    assert created == 14  # 14 x 7.00 = 98.00 of 100.00; the 15th would overdraw
    assert refused == POSTERS * ATTEMPTS - 14
    assert sorted(shared) == ["created"] + ["exists"] * (POSTERS - 1)
    assert ledger.balance("race", "CNY")[0].balance == Decimal("2.00")
    assert ledger.balance("race:shared", "CNY")[0].balance == Decimal("1.00")
    report = verify(ledger.engine)
    assert report.ok, report.problems


def test_sixteen_threads_race_for_the_last_money(db_url: str) -> None:
    ledger = Ledger(make_engine(db_url), group_commit=True)
    ledger.deposit("race", "100.00", "CNY", "seed-1")
    start = threading.Barrier(POSTERS)
    lock = threading.Lock()
    tally = {"created": 0, "refused": 0}
    shared: list[str] = []
    errors: list[BaseException] = []

    def poster(n: int) -> None:
        try:
            start.wait(timeout=30)
            status = ledger.deposit("race:shared", "1.00", "CNY", "shared-key").status
            for i in range(ATTEMPTS):
                try:
                    ledger.consume("race", "7.00", "CNY", f"t{n}:{i}")
                    with lock:
                        tally["created"] += 1
                except InsufficientBalance:
                    with lock:
                        tally["refused"] += 1
            with lock:
                shared.append(status)
        except BaseException as exc:  # surfaced below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(POSTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    _check_race(ledger, tally["created"], tally["refused"], shared)
    assert ledger.group is not None and ledger.group.posted == 1 + POSTERS * (1 + ATTEMPTS)
    ledger.engine.dispose()


def _processes_race(url: str) -> None:
    ledger = Ledger(make_engine(url))
    ledger.deposit("race", "100.00", "CNY", "seed-1")
    procs = [subprocess.Popen([sys.executable, str(WORKER), url, "race", "4", str(ATTEMPTS), "7.00", f"p{i}",
                               "shared-key"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for i in range(POSTERS // 4)]
    try:
        for proc in procs:  # every process connected and its threads made: then all start at once
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        results = []
        for proc in procs:
            out, err = proc.communicate("go\n", timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    _check_race(ledger, sum(r["created"] for r in results), sum(r["refused"] for r in results),
                [s for r in results for s in r["shared"]])
    ledger.engine.dispose()


@pytest.mark.postgres
def test_four_processes_of_four_threads_race_on_postgres(pg_url: str) -> None:
    _processes_race(pg_url)


def test_four_processes_of_four_threads_race_on_sqlite(tmp_path: Path) -> None:
    _processes_race(f"sqlite:///{tmp_path}/race.db")


def _one_group(ledger: Ledger, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run `calls` so that they land in ONE group: a first posting holds the commit until they queue."""
    assert ledger.group is not None
    committer = ledger.group
    entered, release = threading.Event(), threading.Event()
    run_batch = committer.run_batch

    def gated(reqs: Sequence[Any]) -> Any:
        if not release.is_set():
            entered.set()
            assert release.wait(timeout=30)
        return run_batch(reqs)

    committer.run_batch = gated
    answers: list[Any] = [None] * len(calls)

    def call(i: int, fn: Callable[[], Any]) -> None:
        try:
            answers[i] = fn()
        except Exception as exc:
            answers[i] = exc

    holder = threading.Thread(target=ledger.deposit, args=("holder", "1", "CNY", "hold-1"))
    holder.start()
    assert entered.wait(timeout=30)  # the holder leads and holds the commit
    threads = []
    for i, fn in enumerate(calls):  # one at a time, so arrival order is the list's order
        threads.append(threading.Thread(target=call, args=(i, fn)))
        threads[-1].start()
        assert committer.wait_pending(i + 1, timeout=30)
    groups = committer.groups
    release.set()
    for t in [holder, *threads]:
        t.join(timeout=60)
    assert committer.groups == groups + 2  # the holder's group, then all of `calls` together
    committer.run_batch = run_batch
    return answers


def test_one_group_keeps_order_idempotency_and_refusals(db_url: str, clock: Any) -> None:
    ledger = Ledger(make_engine(db_url), clock=clock, group_commit=True)
    c = "zoho:Accounts:1"
    answers = _one_group(ledger, [
        lambda: ledger.deposit(c, "10.00", "CNY", "d1"),
        lambda: ledger.consume(c, "4.00", "CNY", "k1"),  # after d1, as it arrived
        lambda: ledger.consume(c, "4.00", "CNY", "k1"),  # the same key again: the first's answer
        lambda: ledger.consume(c, "5.00", "CNY", "k1"),  # the same key, another amount: a conflict
        lambda: ledger.consume(c, "7.00", "CNY", "k2"),  # 6.00 left: refused, the others still commit
        lambda: ledger.consume("ghost", "1.00", "CNY", "g1"),  # refused: leaves no account behind
        lambda: ledger.consume(c, "6.00", "CNY", "k3"),
    ])
    d1, k1, again, conflict, over, ghost, k3 = answers
    assert d1.status == "created" and k1.status == "created" and k1.balance == Decimal("6.00")
    assert again.status == "exists" and again.data == k1.data
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(over, InsufficientBalance) and isinstance(ghost, InsufficientBalance)
    assert k3.balance == Decimal("0.00")
    assert ledger.consume(c, "4.00", "CNY", "k1").to_dict() == {**k1.to_dict(), "status": "exists"}
    with pytest.raises(NotFound):  # the refused consume made no account, as a lone `post` would not
        ledger.balance("ghost", "CNY")
    assert [a.customer for a in ledger.accounts()] == ["holder", c]
    report = verify(ledger.engine)
    assert report.ok, report.problems
    ledger.engine.dispose()


def test_a_group_whose_transaction_fails_answers_each_request_alone(sqlite_url: str) -> None:
    ledger = Ledger(make_engine(sqlite_url), group_commit=True)
    assert ledger.group is not None
    real = ledger.group.run_batch

    def broken(reqs: Sequence[Any]) -> Any:
        if len(reqs) > 1:
            raise RuntimeError("the group's transaction failed")
        return real(reqs)

    ledger.group.run_batch = broken
    ledger.deposit("c", "5", "CNY", "d0")
    answers = _one_group(ledger, [lambda: ledger.deposit("c", "1", "CNY", "d1"),
                                  lambda: ledger.consume("c", "9", "CNY", "k1")])
    assert answers[0].status == "created"
    assert isinstance(answers[1], InsufficientBalance)
    ledger.engine.dispose()


def test_the_plain_ledger_has_no_group(sqlite_url: str) -> None:
    ledger = Ledger(make_engine(sqlite_url))
    assert ledger.group is None
    req = make_request("deposit", "c", "1", "CNY", "d1")
    assert ledger.post(req).status == "created"
    ledger.engine.dispose()
