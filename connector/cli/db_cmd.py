"""`prepaid-sync db ...`: explicit schema management for deployments."""

from __future__ import annotations

import typer

from connector.cli.common import handled, out, state
from connector.config import choose_database
from connector.db import engine as db

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  help="Database schema (migrations run automatically on first use).")


@app.command("upgrade")
def upgrade() -> None:
    """Create the database's tables, or upgrade them to the newest revision."""
    with handled(False):
        choice = choose_database(state.db, state.config)
        engine, before = db.connect_database(choice.url, source=choice.source, create=True)
        after = db.upgrade_schema(engine, force=True)
        url = engine.url.render_as_string(hide_password=True)
        out.print(f"schema at revision {after} (was {before or 'empty'}) on {url} ({choice.source})",
                  markup=False, highlight=False)


@app.command("current")
def current() -> None:
    """Show the schema revision of the database (never creates one)."""
    with handled(False):
        choice = choose_database(state.db, state.config)
        engine, revision = db.connect_database(choice.url, source=choice.source, create=False)
        out.print(f"{revision or 'empty'} (code ships {db.head_revision()}) on "
                  f"{engine.url.render_as_string(hide_password=True)} ({choice.source})", markup=False,
                  highlight=False)
