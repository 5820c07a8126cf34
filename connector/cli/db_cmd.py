"""`prepaid-sync db ...`: explicit schema management for deployments."""

from __future__ import annotations

import typer

from connector.cli.common import handled, out, state
from connector.ledger import db

app = typer.Typer(no_args_is_help=True, help="Database schema (migrations run automatically on first use).")


@app.command("upgrade")
def upgrade() -> None:
    """Upgrade the database schema to the newest revision."""
    with handled(False):
        engine = db.make_engine(state.db, upgrade=False)
        before = db.current_revision(engine)
        after = db.upgrade_schema(engine, force=True)
        url = engine.url.render_as_string(hide_password=True)
        out.print(f"schema at revision {after} (was {before or 'empty'}) on {url}")


@app.command("current")
def current() -> None:
    """Show the schema revision of the database."""
    with handled(False):
        engine = db.make_engine(state.db, upgrade=False)
        out.print(f"{db.current_revision(engine) or 'empty'} (code ships {db.head_revision()})")
