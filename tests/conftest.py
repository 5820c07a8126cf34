"""Shared fixtures: ledgers on SQLite and PostgreSQL, the one fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from clock import Clock

# HYPOTHESIS_PROFILE=deep runs the property tests much longer (not in CI).
settings.register_profile("ci", max_examples=60)
settings.register_profile("deep", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_URL = os.environ.get("PREPAID_SYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver error means "not reachable"
        return f"PostgreSQL at {PG_URL} is not reachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"


_PG_REASON: list[str | None] = []


def require_pg() -> None:
    """Skip (on a developer machine) or fail (in CI) when PostgreSQL is down."""
    if not _PG_REASON:
        _PG_REASON.append(pg_available())
    reason = _PG_REASON[0]
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh PostgreSQL schema, dropped afterwards."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A URL to a new SQLite file."""
    return f"sqlite:///{tmp_path}/ledger.db"  # type: ignore[str-format]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


@pytest.fixture
def clock_start() -> datetime | float | None:
    """Where the `clock` fixture starts (None: `clock.START`); override it in a folder or module."""
    return None


@pytest.fixture
def clock(clock_start: datetime | float | None) -> Clock:
    """The suite's one fake clock (`tests/clock.py`), at `clock_start`."""
    return Clock(clock_start)


@pytest.fixture
def clean_env() -> Iterator[None]:
    """No CRM secret from the machine's environment, and what a CLI call loads into it (`.env`) undone."""
    from connector.config import FXIAOKE_SECRETS, ZOHO_SECRETS

    saved = dict(os.environ)
    for var in (*ZOHO_SECRETS.values(), *FXIAOKE_SECRETS.values()):
        os.environ.pop(var, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _close_push_hubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every push hub a test made in this process when the test ends.

    An app made in-process with a config file starts a hub that renews channels every minute from a
    daemon thread; left open it would outlive the test and its database and log into a later test.
    """
    from connector.push import hub as hub_module

    made: list[hub_module.PushHub] = []
    original = hub_module.PushHub.__init__

    def init(self: hub_module.PushHub, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(hub_module.PushHub, "__init__", init)
    yield
    for hub in made:
        hub.close()
