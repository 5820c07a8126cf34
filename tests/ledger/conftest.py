"""Ledger fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.ledger import Ledger
from connector.db.engine import make_engine


@pytest.fixture
def ledger(db_url: str, clock: object) -> Iterator[Ledger]:
    """A ledger on a fresh database (SQLite and PostgreSQL), on the test clock."""
    engine = make_engine(db_url)
    yield Ledger(engine, clock=clock)  # type: ignore[arg-type]
    engine.dispose()
