"""A process of THREADS posters sharing one group-committing ledger (used by test_group_commit.py).

Usage: group_race_worker.py DB_URL CUSTOMER THREADS ATTEMPTS AMOUNT KEY_PREFIX SHARED_KEY
Prints "ready", waits for a line on stdin (the start signal), then one JSON line:
{"created": n, "refused": n, "shared": ["created"|"exists", ...], "groups": n, "posted": n}.
"""

from __future__ import annotations

import json
import sys
import threading

from connector.errors import InsufficientBalance
from connector.ledger import Ledger


def main() -> None:
    url, customer, threads, attempts, amount, prefix, shared_key = sys.argv[1:8]
    ledger = Ledger.open(url, group_commit=True)
    with ledger.engine.connect():
        pass  # connect before the start signal so all processes hit the database together
    counts = {"created": 0, "refused": 0}
    shared: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(int(threads))

    def poster(n: int) -> None:
        start.wait(timeout=60)
        status = ledger.deposit(customer + ":shared", "1.00", "CNY", shared_key).status
        made = refused = 0
        for i in range(int(attempts)):
            try:
                ledger.consume(customer, amount, "CNY", f"{prefix}:{n}:{i}")
                made += 1
            except InsufficientBalance:
                refused += 1
        with lock:
            counts["created"] += made
            counts["refused"] += refused
            shared.append(status)

    workers = [threading.Thread(target=poster, args=(n,)) for n in range(int(threads))]
    print("ready", flush=True)
    sys.stdin.readline()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert ledger.group is not None
    group = {"groups": ledger.group.groups, "posted": ledger.group.posted}
    print(json.dumps({**counts, "shared": shared, **group}))


if __name__ == "__main__":
    main()
