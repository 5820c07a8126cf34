"""Engine factory and schema upgrades for the ledger database.

SQLite (the embedded default) runs in WAL mode with foreign keys on, a busy timeout, and
`BEGIN IMMEDIATE` for every writing transaction (`write_transaction`) so that writers serialize
up front instead of failing on lock upgrade; readers use deferred transactions and never block.
PostgreSQL uses row locks (`SELECT ... FOR UPDATE`) per account.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Integer, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool, StaticPool
from sqlalchemy.sql import functions

from connector.errors import ConfigError, DatabaseUnavailable

DEFAULT_URL = "sqlite:///./prepaid-sync.db"
ENV_VAR = "PREPAID_SYNC_DB"
MIGRATIONS = Path(__file__).with_name("migrations")
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another one's lock


def resolve_url(explicit: str | None = None) -> str:
    """`--db URL`, else env `PREPAID_SYNC_DB`, else `sqlite:///./prepaid-sync.db`."""
    url = explicit or os.environ.get(ENV_VAR) or DEFAULT_URL
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with a terse text
        raise ConfigError(f"database URL {url!r} is not valid: {exc}", field="db") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database {parsed.get_backend_name()!r} is not supported; use sqlite or postgresql", field="db")
    return url


# SQLite's SUM() raises "integer overflow" as soon as a running total leaves 64 bits, even when the
# final total would fit (a backdated deposit can make a partial sum far larger than any balance).
# Summed as whole billions plus remainders, each partial sum stays ~10**9 times smaller, and the
# final `+` never raises (SQLite turns an overflowing `+`/`*` into a float). PostgreSQL sums bigint
# into numeric, exactly. So every integer `func.sum` is overflow-safe on both backends.
SUM_SPLIT = 1_000_000_000


@compiles(functions.sum, "sqlite")
def _sqlite_exact_sum(element: functions.sum[Any], compiler: Any, **kw: Any) -> str:
    if not isinstance(element.type, Integer):
        return compiler.visit_function(element, **kw)  # type: ignore[no-any-return]
    arg = compiler.process(element.clauses, **kw)
    return f"(SUM(({arg}) / {SUM_SPLIT}) * {SUM_SPLIT} + SUM(({arg}) % {SUM_SPLIT}))"


def exact_sum_sql(expr: str) -> str:
    """The overflow-safe SUM of an integer SQL expression, for hand-written SQL on either backend."""
    return f"(SUM(({expr}) / {SUM_SPLIT}) * {SUM_SPLIT} + SUM(({expr}) % {SUM_SPLIT}))"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # isolation_level=None hands transaction control to us (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   f"busy_timeout={BUSY_TIMEOUT_MS}", "temp_store=MEMORY", "cache_size=-16384"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (no deadlock on lock upgrade); readers stay deferred so
    # that, with WAL, they never block writers.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")


@contextmanager
def write_transaction(engine: Engine, *, wait: float | None = None) -> Iterator[Connection]:
    """A transaction that will write: `BEGIN IMMEDIATE` on SQLite, a plain transaction on PostgreSQL.

    `wait` bounds how many seconds SQLite waits for another writer's lock (default 30) before it raises
    "database is locked"."""
    with engine.connect() as conn:
        conn.execution_options(ledger_write=True)
        # Per-transaction hand-offs (see store.lock_account) never outlive their transaction.
        conn.info.pop("prefetched_posting", None)
        conn.info.pop("reserved_ids", None)
        conn.info.pop("created_accounts", None)
        raw = (conn.connection.driver_connection if wait is not None and conn.dialect.name == "sqlite"
               else None)
        if raw is not None:
            raw.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")  # type: ignore[operator]
        try:
            with conn.begin():
                yield conn
        finally:
            if raw is not None:
                raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def storage_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the database's size limit) is full: SQLite SQLITE_FULL, PostgreSQL
    53100 disk_full, or an OSError ENOSPC."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode",
                       None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(orig)
    return getattr(orig, "sqlstate", None) == "53100"


def database_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite giving up waiting for another writer ("database is locked")."""
    orig = getattr(exc, "orig", None)
    return isinstance(orig, sqlite3.OperationalError) and (
        getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "database is locked" in str(orig))


def make_engine(url: str | None = None, *, upgrade: bool = True, **kw: Any) -> Engine:
    """An engine for `url` (resolved as `resolve_url` does), schema upgraded to head on first use."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if not memory and parsed.database:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else NullPool if kw.pop("nullpool", False) else None,
            **kw,
        ) if memory or kw.get("nullpool") else create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kw)
    if upgrade:
        upgrade_schema(engine)
    return engine


def shown_url(url: str) -> str:
    """`url` as people may see it: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: resolve_url says why when it is opened
        return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(resolve_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def connect_database(url: str, *, source: str, create: bool) -> tuple[Engine, str | None]:
    """An engine on `url` (chosen by `source`) that has answered, and its schema revision (None: no tables
    yet).

    A SQLite file that does not exist is refused unless `create`; a database that cannot be reached is one
    `DatabaseUnavailable` naming it (password masked) and the fix, not a driver traceback."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None and not create and not path.exists():
        raise DatabaseUnavailable(
            f"no database at {path} ({source}); nothing was created. If that is the right "
            f"place, create it with `prepaid-sync db upgrade` (or run a command that writes, "
            f"such as `prepaid-sync sync run`); else point --db, ${ENV_VAR} or the config's "
            f"database_url at your database", database=str(path))
    engine = make_engine(resolved, upgrade=False)
    try:
        return engine, current_revision(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise _unreachable(exc, make_url(resolved), url, source) from None


def open_database(url: str, *, source: str, create: bool) -> Engine:
    """The engine of the database a command uses, its schema at head. With `create` false (a command that only
    reads), a database that is not there is refused, never created: a SQLite file that does not exist, or a
    database without prepaid-sync's tables."""
    engine, revision = connect_database(url, source=source, create=create)
    if revision is None and not create:
        engine.dispose()
        raise DatabaseUnavailable(
            f"{shown_url(url)} ({source}) has no prepaid-sync tables; nothing was created. "
            f"Create them with `prepaid-sync db upgrade`, or point --db, ${ENV_VAR} or the "
            f"config's database_url at your database", database=shown_url(url))
    upgrade_schema(engine)
    return engine


def _unreachable(exc: DBAPIError, parsed: URL, url: str, source: str) -> DatabaseUnavailable:
    """One line for a database that would not open: which one, why, and what to do."""
    orig = exc.orig if exc.orig is not None else exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    shown = shown_url(url)
    if parsed.get_backend_name() == "sqlite":
        return DatabaseUnavailable(f"cannot open the SQLite database {parsed.database} ({source}): {first}",
                                   database=shown)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    state = getattr(orig, "sqlstate", None)
    lowered = str(orig).lower()
    if state == "3D000" or "does not exist" in lowered:
        createdb = ["createdb"]
        for flag, value in (("-h", parsed.host), ("-p", parsed.port), ("-U", parsed.username)):
            if value:
                createdb += [flag, str(value)]
        createdb.append(str(parsed.database))
        return DatabaseUnavailable(
            f"PostgreSQL database {parsed.database!r} does not exist on {where} ({source}: "
            f"{shown}); create it with `{' '.join(createdb)}`, then run `prepaid-sync db upgrade`",
            database=shown)
    if state in ("28P01", "28000") or "authentication failed" in lowered:
        return DatabaseUnavailable(
            f"PostgreSQL at {where} refused user {parsed.username!r} ({first}); check the "
            f"user and password of {shown} ({source})", database=shown)
    if "refused" in lowered:
        why = "connection refused; is the PostgreSQL server running there?"
    elif "translate host name" in lowered or "name or service not known" in lowered:
        why = f"unknown host {parsed.host!r}; check the address"
    elif "timeout" in lowered or "timed out" in lowered:
        why = "no answer (timed out); is the server running and reachable from here?"
    else:
        why = first
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {where} ({source}: {shown}): {why}",
                               database=shown)


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration this code ships."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def upgrade_schema(engine: Engine, *, force: bool = False) -> str:
    """Bring the schema to head (idempotent); returns the revision it is at."""
    key = str(engine.url)
    with _upgrade_lock:
        if key in _upgraded and not force and ":memory:" not in key:
            return head_revision()
        if current_revision(engine) != head_revision():
            with _migration_file_lock(engine):
                if current_revision(engine) != head_revision():  # another process may have done it
                    command.upgrade(_alembic_config(engine), "head")
        _upgraded.add(key)
    return head_revision()


@contextmanager
def _migration_file_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file, processes migrating it at once take turns on `<file>-migrate.lock` (flock).

    The migration transaction is already `BEGIN IMMEDIATE`; the file lock also covers what happens
    before it (journal-mode setup on a brand-new file, Alembic reading the version table), so the
    second process simply finds the schema at head. PostgreSQL uses an advisory lock (env.py)."""
    database = make_url(str(engine.url)).database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}-migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
