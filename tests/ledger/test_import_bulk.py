"""Bulk import at a size that takes the fast paths (COPY, deferred cache updates, chunks, state eviction):
it must leave exactly what the posting path leaves for the same requests."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text

from connector.ledger import Ledger, importer, writer
from connector.ledger.importer import Importer
from connector.ledger.planners import make_request
from connector.ledger.verify import verify
from connector.timeutil import parse_datetime


def _rows(customers: int, count: int) -> list[tuple[str, ...]]:
    """(op, customer, amount, key, expires_at) rows: an opening deposit each, then mixed postings."""
    rng = random.Random(5)
    rows = [("deposit", f"c{c}", "30.00", f"open:{c}", "2099-12-31" if c % 3 == 0 else "")
            for c in range(customers)]
    balance = [3000] * customers  # cents; money out only when it fits, so lots run dry but nothing is refused
    for n in range(count - customers):
        c, roll = rng.randrange(customers), rng.random()
        if roll < 0.93:
            amount = rng.randint(1, 900)
            if roll < 0.75 and amount <= balance[c]:
                rows.append(("consume", f"c{c}", f"{amount / 100:.2f}", f"use:{n}", ""))
                balance[c] -= amount
                continue
            expires = "2099-06-30" if n % 4 else ""
            rows.append(("deposit", f"c{c}", f"{amount // 100}.50", f"top:{n}", expires))
            balance[c] += amount // 100 * 100 + 50
        elif (amount := rng.randint(1, 300)) <= balance[c]:
            rows.append(("refund", f"c{c}", f"{amount / 100:.2f}", f"ref:{n}", ""))
            balance[c] -= amount
    return rows


def _snapshot(conn: Any, prefix: str) -> dict[str, Any]:
    """Per customer (prefix removed): balance, debt, and each lot's amount/remaining in id order."""
    out: dict[str, Any] = {}
    for row in conn.execute(text("SELECT id, customer_key, balance, debt FROM accounts "
                                 "WHERE customer_key LIKE :p ORDER BY id"), {"p": prefix + "%"}):
        lots = conn.execute(text("SELECT amount, remaining, expires_at IS NULL FROM lots "
                                 "WHERE account_id = :a ORDER BY id"), {"a": row.id}).all()
        kinds = conn.execute(text("SELECT kind, amount, balance_after FROM entries WHERE account_id = :a "
                                  "ORDER BY id"), {"a": row.id}).all()
        out[row.customer_key[len(prefix):]] = (row.balance, row.debt, [tuple(r) for r in lots],
                                               [tuple(r) for r in kinds])
    return out


@pytest.mark.parametrize("copy_min", [20, writer.COPY_MIN])
def test_bulk_import_matches_the_posting_path(ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Any, copy_min: int) -> None:
    monkeypatch.setattr(importer, "STATE_CACHE", 40)  # evict cached states (and flush caches) mid-file
    monkeypatch.setattr(writer, "COPY_MIN", copy_min)  # 20: PostgreSQL also updates caches through COPY
    monkeypatch.setattr(importer, "PENDING_UPDATES", 100)  # some chunks write the caches, some leave them
    rows = _rows(60, 2600)
    path = tmp_path / "bulk.csv"
    path.write_text("op,customer,amount,currency,key,expires_at\n" + "".join(
        f"{op},imp:{c},{amount},CNY,{key},{exp}\n" for op, c, amount, key, exp in rows))
    report = Importer(ledger.engine, chunk=700).run(path)
    assert report.errors == [] and report.applied
    refused = 0
    for start in range(0, len(rows), 300):
        reqs = [make_request(op, f"post:{c}", amount, "CNY", f"p:{key}",
                             expires_at=parse_datetime(exp, "expires_at", end_of_day=True))
                for op, c, amount, key, exp in rows[start:start + 300]]
        refused += sum(o.error is not None for o in ledger.post_batch(reqs))
    assert refused == 0 and report.created == len(rows) > 2000
    with ledger.engine.connect() as conn:
        imported, posted = _snapshot(conn, "imp:"), _snapshot(conn, "post:")
    assert len(imported) == 60 and imported == posted
    assert verify(ledger.engine).ok
    again = Importer(ledger.engine, chunk=700).run(path)
    assert (again.applied, again.created, again.exists, again.errors) == (True, 0, len(rows), [])


def test_bulk_import_with_a_bad_row_writes_nothing(ledger: Ledger, tmp_path: Any) -> None:
    rows = _rows(30, 1500)
    body = "".join(f"{op},b:{c},{amount},CNY,{key},{exp}\n" for op, c, amount, key, exp in rows)
    body += "consume,b:1,100000.00,CNY,too-much,\nconsume,b:2,1.001,CNY,bad-amount,\n"
    path = tmp_path / "bad.csv"
    path.write_text("op,customer,amount,currency,key,expires_at\n" + body)
    report = Importer(ledger.engine, chunk=400).run(path)
    assert not report.applied
    last = len(rows) + 1  # the header is line 1
    assert [(e.line, e.column) for e in report.errors] == [(last + 1, "amount"), (last + 2, "amount")]
    assert verify(ledger.engine).counts["entries"] == 0
