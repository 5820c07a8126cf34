"""Issue 15, done when: 100 concurrent HTTP consumptions of one customer's last money post exactly as many as
fit, on SQLite and PostgreSQL, through a real `prepaid-sync serve`; replays and conflicts hold under
concurrency. Every client starts at one barrier; nothing waits on a timer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests

from api_support import Api, ServeProcess, make_keys, secret_of
from connector.db.engine import make_engine
from connector.ledger import Ledger
from connector.ledger.verify import verify

P = "/api/v1/problems/"


def at_once(calls: list[Callable[[requests.Session], requests.Response]]) -> list[requests.Response]:
    """Run every call in its own thread, all released together by one barrier."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            try:
                out[i] = calls[i](session)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    failed = [o for o in out if not isinstance(o, requests.Response)]
    assert not failed, failed[:3]
    return out


def served(db_url: str) -> tuple[ServeProcess, Api]:
    write, read = make_keys(db_url)
    proc = ServeProcess(db_url)
    return proc, Api(proc.url, db_url, write, read)


def test_100_concurrent_consumptions_of_the_last_money_post_exactly_as_many_as_fit(db_url: str) -> None:
    ledger = Ledger(make_engine(db_url))
    ledger.deposit("c1", "37.00", "CNY", "seed")
    proc, api = served(db_url)
    try:
        body = {"amount": "1.00", "currency": "CNY"}
        answers = at_once([lambda s, i=i: api.post("/customers/c1/consumptions", body, idem=f"u{i}",
                                                   session=s) for i in range(100)])
    finally:
        code, err = proc.stop()
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 37, 422: 63}, statuses
    assert {a.json()["type"] for a in answers if a.status_code == 422} == {P + "insufficient-balance"}
    assert sorted(a.json()["balance"] for a in answers if a.status_code == 201) == sorted(
        f"{n}.00" for n in range(37))  # each success saw a distinct balance after it
    assert ledger.balance("c1", "CNY")[0].balance == Decimal("0.00")
    assert verify(ledger.engine).ok
    assert code == 0, err
    assert secret_of(api.write_key) not in err


def test_replays_and_conflicts_under_concurrency(db_url: str) -> None:
    ledger = Ledger(make_engine(db_url))
    ledger.deposit("c1", "100.00", "CNY", "seed")
    proc, api = served(db_url)
    try:
        one = {"amount": "1.00", "currency": "CNY"}
        two = {"amount": "2.00", "currency": "CNY"}
        calls = [lambda s, b=(one if i % 2 else two): api.post("/customers/c1/consumptions", b, idem="same",
                                                                 session=s) for i in range(40)]
        # and 20 keys, each sent by three clients at once with the same body
        calls += [lambda s, k=f"k{i % 20}": api.post("/customers/c1/consumptions", one, idem=k, session=s)
                  for i in range(60)]
        answers = at_once(calls)
    finally:
        code, _err = proc.stop()
    same = answers[:40]
    winners = [a for a in same if a.status_code == 201]
    amount = winners[0].json()["amount"]
    assert all(a.json()["amount"] == amount for a in winners)
    assert sum("Idempotent-Replayed" not in a.headers for a in winners) == 1  # one created, the rest replays
    assert len(winners) == 20 and all(a.json() == winners[0].json() for a in winners)
    assert all(a.status_code == 409 and a.json()["type"] == P + "idempotency-conflict"
               for a in same if a.status_code != 201)
    rest = answers[40:]
    assert all(a.status_code == 201 for a in rest)
    assert sum("Idempotent-Replayed" not in a.headers for a in rest) == 20
    assert ledger.balance("c1", "CNY")[0].balance == Decimal(100) - Decimal(amount) - 20
    assert verify(ledger.engine).ok and code == 0
