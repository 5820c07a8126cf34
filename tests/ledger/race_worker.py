"""A separate process that races others for the same money (used by test_concurrency.py).

Usage: race_worker.py DB_URL START_AT_EPOCH CUSTOMER ATTEMPTS AMOUNT KEY_PREFIX SHARED_KEY
Prints one JSON line: {"created": n, "refused": n, "shared": "created"|"exists"}.
"""

from __future__ import annotations

import json
import sys
import time

from connector.errors import InsufficientBalance
from connector.ledger import Ledger


def main() -> None:
    url, start_at, customer, attempts, amount, prefix, shared_key = sys.argv[1:8]
    ledger = Ledger.open(url)
    with ledger.engine.connect():
        pass  # connect before the start line so all processes hit the database together
    time.sleep(max(0.0, float(start_at) - time.time()))
    shared = ledger.deposit(customer + ":shared", "1.00", "CNY", shared_key).status
    created = refused = 0
    for n in range(int(attempts)):
        try:
            ledger.consume(customer, amount, "CNY", f"{prefix}:{n}")
            created += 1
        except InsufficientBalance:
            refused += 1
    print(json.dumps({"created": created, "refused": refused, "shared": shared}))


if __name__ == "__main__":
    main()
