"""Root command: global options and the sub-command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from connector import __version__
from connector.cli import db_cmd, demo_cmd, ledger_cmd, report_cmd, sandbox_cmd, sync_cmd, sync_demo
from connector.cli.common import state

app = typer.Typer(name="prepaid-sync", no_args_is_help=True, add_completion=False,
                  help="Keep prepaid customer money in sync between a local ledger and Zoho CRM or Fxiaoke.")
app.add_typer(ledger_cmd.app, name="ledger")
app.add_typer(db_cmd.app, name="db")
app.add_typer(sandbox_cmd.app, name="sandbox")
ledger_cmd.app.command("demo")(demo_cmd.demo)  # the ledger walkthrough (was `prepaid-sync demo`)
app.add_typer(sync_cmd.sync_app, name="sync")
app.add_typer(sync_cmd.mappings_app, name="mappings")
app.command("init")(sync_cmd.init)
app.command("demo")(sync_demo.demo)
app.add_typer(report_cmd.app, name="report")
app.command("statement")(report_cmd.statement)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prepaid-sync {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (else $PREPAID_SYNC_DB, else "
                                           "sqlite:///./prepaid-sync.db).", show_default=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """prepaid-sync: a prepayment ledger kept in sync with your CRM."""
    state.db = db


def main() -> None:
    """Console-script entry point."""
    app()
