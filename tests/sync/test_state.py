"""Sync-state helpers on SQLite and PostgreSQL: set-based upserts and per-record error rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connector.db.engine import make_engine
from connector.db.rows import upsert, upsert_many
from connector.sync.record_errors import record_error, resolve_errors
from connector.sync import tables as t

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: object) -> object:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else f"sqlite:///{tmp_path}/s.db"
    return make_engine(url)


def _items(engine: object) -> dict[str, tuple]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(t.items.c.crm_id, t.items.c.amount, t.items.c.status, t.items.c.version,
                                   t.items.c.entry_ids)).all()
    return {r.crm_id: (r.amount, r.status, r.version, r.entry_ids) for r in rows}


def test_upsert_many_inserts_updates_and_merges_repeated_keys(db: object) -> None:
    key = {"connection": "c", "kind": "payment"}
    base = {"fingerprint": "f", "payload": "{}", "status": "posted", "amount": "1.00"}
    with db.begin() as conn:  # type: ignore[attr-defined]
        upsert_many(conn, t.items, [{**key, "crm_id": "a", **base}, {**key, "crm_id": "b", **base}])
    assert _items(db) == {"a": ("1.00", "posted", 1, "[]"), "b": ("1.00", "posted", 1, "[]")}  # defaults
    with db.begin() as conn:  # type: ignore[attr-defined]
        upsert_many(
            conn,
            t.items,
            [
                {**key, "crm_id": "a", "fingerprint": "g", "payload": "{}", "amount": "2.00"
                 },  # only these change
                {**key, "crm_id": "c", **base, "version": 3},  # new row, other column set
                {**key, "crm_id": "a", "status": "error", "entry_ids": "[7]"
                 },  # same key again: applied after
            ])
    assert _items(db) == {"a": ("2.00", "error", 1, "[7]"), "b": ("1.00", "posted", 1, "[]"),
                          "c": ("1.00", "posted", 3, "[]")}
    with db.begin() as conn:  # type: ignore[attr-defined]
        upsert_many(conn, t.items, [])
        upsert(conn, t.items, {**key, "crm_id": "b"},
                     {"amount": "5.00", "fingerprint": "h", "payload": "{}", "status": "posted"})
    assert _items(db)["b"] == ("5.00", "posted", 1, "[]")


def test_record_error_counts_attempts_while_open_and_restarts_after_resolution(db: object) -> None:
    def record(at: datetime, reason: str) -> None:
        with db.begin() as conn:  # type: ignore[attr-defined]
            record_error(conn, "c", 1, "zoho:X:1", "Amount", "post", reason, at)

    def row() -> tuple:
        with db.connect() as conn:  # type: ignore[attr-defined]
            r = conn.execute(select(t.errors)).one()
        return r.attempts, r.reason, r.first_seen, r.last_seen, r.resolved_at

    record(T0, "first")
    record(T0 + timedelta(minutes=1), "second")
    assert row() == (2, "second", T0, T0 + timedelta(minutes=1), None)
    with db.begin() as conn:  # type: ignore[attr-defined]
        resolve_errors(conn, "c", ["zoho:X:1", "zoho:X:2"], "post", T0 + timedelta(minutes=2))
    assert row()[4] == T0 + timedelta(minutes=2)
    record(T0 + timedelta(minutes=3), "back")
    assert row() == (1, "back", T0, T0 + timedelta(minutes=3), None)
