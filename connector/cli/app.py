"""Root command: global options and the sub-command groups."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from connector import __version__, logs
from connector.cli import (
    alerts_cmd,
    db_cmd,
    demo_cmd,
    ledger_cmd,
    notifications_cmd,
    ops_cmd,
    report_cmd,
    sandbox_cmd,
    schedule_cmd,
    serve_cmd,
    sync_cmd,
    sync_demo,
)
from connector.cli.common import state

# rich_markup_mode=None on every Typer: plain help, so bracketed words ([compliance], [connections.NAME])
# show as written and flags show no type; tests/test_cli_help.py checks every command.
app = typer.Typer(name="prepaid-sync", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
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
app.command("schedule")(schedule_cmd.schedule)
app.add_typer(alerts_cmd.app, name="alerts")
app.command("status")(ops_cmd.status)
app.add_typer(ops_cmd.runs_app, name="runs")
app.command("serve")(serve_cmd.serve)
app.add_typer(serve_cmd.apikey_app, name="apikey")
app.add_typer(notifications_cmd.app, name="notifications")


class LogFormat(str, Enum):
    """`--log-format` choices."""

    text = "text"
    json = "json"


class LogLevel(str, Enum):
    """`--log-level` choices."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prepaid-sync {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    db: Annotated[str | None,
                  typer.Option(
                      "--db", help="Database URL, for every command (else $PREPAID_SYNC_DB, "
                      "else the config file's database_url, else sqlite:///./prepaid-sync.db).",
                      show_default=False)] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", help="Config file, for commands without their own "
            "--config (else $PREPAID_SYNC_CONFIG, else ./prepaid-sync.toml).", show_default=False)] = None,
    version: Annotated[bool,
                       typer.Option("--version", callback=_version, is_eager=True,
                                    help="Show the version and exit.")] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option("--log-format", envvar=logs.FORMAT_ENV,
                     help="Log lines as text or JSON lines (on stderr).", show_default=False)] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.
        Option("--log-level", envvar=logs.
               LEVEL_ENV, case_sensitive=False, help="Level of prepaid-sync's own log lines (default INFO "
               "once a log option is given).", show_default=False)] = None,
) -> None:
    """prepaid-sync: a prepayment ledger kept in sync with your CRM."""
    state.db = db
    state.config = config
    if log_format or log_level:
        logs.setup_logging(log_format.value if log_format else "text",
                           log_level.value if log_level else "INFO")
    else:
        logs.guard_last_resort()


def main() -> None:
    """Console-script entry point."""
    app()
