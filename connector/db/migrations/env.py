"""Alembic environment: runs against the engine handed over by `connector.db.engine`."""

from __future__ import annotations

from alembic import context

from connector.db.schema import metadata

config = context.config
target_metadata = metadata


def run() -> None:
    """Run migrations online, in one transaction, on the given engine (or the configured URL)."""
    engine = config.attributes.get("engine")
    if engine is None:
        from connector.db.engine import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"), upgrade=False)
    if context.is_offline_mode():
        context.configure(url=str(engine.url), target_metadata=target_metadata, literal_binds=True,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    with engine.connect() as connection:
        # Migrations write: on SQLite take the write lock up front (BEGIN IMMEDIATE), so processes
        # upgrading one file at once wait for each other instead of failing on lock upgrade.
        connection.execution_options(ledger_write=True)
        raw = connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
        if raw is not None:
            # A migration that rebuilds a table (SQLite cannot alter it in place) drops the old one;
            # SQLite's procedure for that wants foreign keys off, outside the transaction. The
            # migration checks the references itself (PRAGMA foreign_key_check) before commit.
            raw.execute("PRAGMA foreign_keys=OFF")
        if connection.dialect.name == "postgresql":
            # Two processes upgrading one database at once must not both create tables.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7410395117)")
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if raw is not None and raw.in_transaction:  # never hand a connection without them back
                connection.invalidate()
            elif raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


run()
