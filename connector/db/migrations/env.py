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
        if connection.dialect.name == "postgresql":
            # Two processes upgrading one database at once must not both create tables.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7410395117)")
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
