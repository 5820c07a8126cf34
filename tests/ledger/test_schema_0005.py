"""Issue 14: migration 0005 (entry ranges on postings, three indexes replaced) keeps every posting's
replay, `verify` and the append-only triggers, on a database that had postings before it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from connector.db.engine import _alembic_config, make_engine
from connector.ledger import Ledger
from connector.ledger.verify import verify

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _post_some(ledger: Ledger) -> list[dict[str, object]]:
    """Postings of each shape a replay rebuilds: deposits, a split consume, a refund and fee, a reversal."""
    ledger.set_terms("c1", "USD", refund_policy="fee", refund_fee_pct="10")
    results = [ledger.deposit("c1", "10", "USD", "d1"), ledger.deposit("c1", "5", "USD", "d2"),
               ledger.deposit("c2", "3", "USD", "d3"), ledger.consume("c1", "12", "USD", "k1"),
               ledger.refund("c1", "2", "USD", "r1"), ledger.consume("c2", "1", "USD", "k2")]
    results.append(ledger.reverse(results[-1].entry_ids[0], "rev1", memo="mistake"))
    return [r.data for r in results]


KEYS = ("d1", "d2", "d3", "k1", "r1", "k2", "rev1")


def _replays(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(text("SELECT * FROM postings"))}
    from connector.ledger.writer import rebuild_result

    with ledger.engine.connect() as conn:
        return [rebuild_result(conn, rows[k]) for k in KEYS]


def test_upgrade_from_0004_keeps_replays_and_verify(db_url: str) -> None:
    raw = create_engine(db_url)
    command.upgrade(_alembic_config(raw), "head")
    engine = make_engine(db_url, upgrade=False)
    ledger = Ledger(engine, clock=lambda: NOW)
    answered = _post_some(ledger)
    assert _replays(ledger) == answered
    engine.dispose()
    command.downgrade(_alembic_config(raw), "0004")  # what a database made before this issue holds
    command.upgrade(_alembic_config(raw), "head")
    raw.dispose()
    engine = make_engine(db_url, upgrade=False)
    ledger = Ledger(engine, clock=lambda: NOW)
    with engine.connect() as conn:
        ranges = conn.execute(text("SELECT count(*) FROM postings WHERE first_entry_id IS NULL")).scalar()
    assert ranges == 0
    assert _replays(ledger) == answered
    assert ledger.consume("c1", "12", "USD", "k1").to_dict() == {"status": "exists", **answered[3]}
    report = verify(engine)
    assert report.ok, report.problems
    for table in ("postings", "entries", "allocations"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def test_verify_finds_an_entry_outside_its_postings_range(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    ledger = Ledger(engine, clock=lambda: NOW)
    ledger.deposit("c1", "10", "USD", "d1")
    ledger.deposit("c1", "5", "USD", "d2")
    with engine.begin() as conn:  # a corrupt row: an entry of d1 written after d2's
        conn.execute(text("INSERT INTO entries (account_id, kind, amount, balance_after, effective_at, "
                          "recorded_at, posting_key, memo) SELECT account_id, 'adjust', 1, 16, effective_at, "
                          "recorded_at, 'd1', '' FROM entries WHERE id = 2"))
    checks = {p["check"] for p in verify(engine).problems}
    assert "entry outside its posting's entry range" in checks
    engine.dispose()
