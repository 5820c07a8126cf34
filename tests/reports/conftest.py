"""Fixtures for the report tests: the hand-computed book on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from report_book import NOW, Book, seed

from connector.ledger import Ledger
from connector.db.engine import make_engine


def _seeded(url: str) -> Iterator[Book]:
    engine = make_engine(url)
    ledger = Ledger(engine, clock=lambda: NOW)
    seed(ledger)
    yield Book(engine, ledger, url)
    engine.dispose()


@pytest.fixture
def book(db_url: str) -> Iterator[Book]:
    """The seeded book on SQLite and PostgreSQL, clock at 2026-07-01 00:00 UTC."""
    yield from _seeded(db_url)


@pytest.fixture
def sqlite_book(sqlite_url: str) -> Iterator[Book]:
    """The seeded book on SQLite only (CLI and browser tests)."""
    yield from _seeded(sqlite_url)


@pytest.fixture
def attrs_csv(tmp_path: object) -> str:
    """ATTRS as a CSV file."""
    path = Path(str(tmp_path)) / "attrs.csv"
    path.write_text("customer,name,owner,tier,flags,kind\nacme,Acme 有限公司,li,gold,,\n"
                    "bolt,Bolt,wang,silver,vip_watch,individual\ndelta,,li,gold,,\n", encoding="utf-8")
    return str(path)
