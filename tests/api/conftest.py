"""API fixtures: an in-process server on a fresh database, with a write key and a read key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api_support import Api, InProcessServer, make_keys
from connector.db.engine import make_engine


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    """An in-process server on a fresh database (SQLite, and PostgreSQL under the `postgres` mark)."""
    write, read = make_keys(db_url)
    with InProcessServer(make_engine(db_url)) as url:
        yield Api(url, db_url, write, read)


@pytest.fixture
def sqlite_api(sqlite_url: str) -> Iterator[Api]:
    """An in-process server on a fresh SQLite database."""
    write, read = make_keys(sqlite_url)
    with InProcessServer(make_engine(sqlite_url)) as url:
        yield Api(url, sqlite_url, write, read)
