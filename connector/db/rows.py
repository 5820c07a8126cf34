"""Row helpers for any layer's tables: JSON text columns (`dumps`/`loads`) and set-based upserts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def dumps(value: Any) -> str:
    """JSON with Decimals and dates as strings, keys sorted (stable for fingerprints)."""
    def conv(v: Any) -> Any:
        if isinstance(v, Decimal):
            return format(v, "f")
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        raise TypeError(f"cannot encode {type(v).__name__}")
    return json.dumps(value, default=conv, sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> Any:
    """Inverse of `dumps` (Decimals stay strings)."""
    return json.loads(text) if text else None


def upsert(conn: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row with `keys` (its whole primary key), or insert it; `upsert_many` of one row."""
    upsert_many(conn, table, [{**keys, **values}])


def upsert_many(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """`upsert` of many rows, each holding the table's whole primary key, in one statement per column set.

    INSERT .. ON CONFLICT (primary key) DO UPDATE the given columns; others keep their value (or
    take their default on insert). The database checks each row as an insert first, so a row must
    hold every NOT NULL column that has no default, even when it only updates. Rows apply as if one
    after another: a key given twice ends with the later values over the earlier ones. SQLite and
    PostgreSQL only; being a single write statement, it never upgrades a read lock.
    """
    keys = [c.name for c in table.primary_key.columns]
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        merged[key] = {**merged[key], **row} if key in merged else row
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in merged.values():  # one executemany needs the same columns in every row
        groups.setdefault(tuple(sorted(row)), []).append(row)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for columns, group in groups.items():
        stmt = insert(table)
        updates = {c: stmt.excluded[c] for c in columns if c not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates) if updates else \
            stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, group)


def fingerprint(data: Any) -> str:
    """A stable digest of what matters in a record (its `dumps` text, hashed)."""
    return hashlib.sha256(dumps(data).encode()).hexdigest()[:32]
