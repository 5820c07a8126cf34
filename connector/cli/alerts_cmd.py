"""`prepaid-sync alerts test` and `alerts pending`: try the channels, look at the outbox."""

from __future__ import annotations

import socket
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from connector.cli.common import database, emit_json, handled, out, state
from connector.config import load_settings
from connector.errors import ConfigError
from connector.timeutil import utcnow
from connector.ops.alerts import Alert, DeliveryError, load_alerts, send, unsent

app = typer.Typer(help="Alert channels and the alert outbox.", no_args_is_help=True,
                  rich_markup_mode=None)
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("test")
def test_cmd(config: ConfigOpt = None,
             channel: Annotated[str | None,
                                typer.Option("--channel", help="Only this channel (by name).")] = None,
             as_json: JsonOpt = False) -> None:
    """Send a test alert through each configured channel now (no outbox, no retries); exit 1 if any failed."""
    with handled(as_json):
        loaded = load_settings(config or state.config)
        rules = load_alerts(loaded.settings.alerts, set(loaded.settings.connections))
        chosen = [rules.channel(channel)] if channel else list(rules.channels)
        if not chosen:
            raise ConfigError(f"{loaded.path}: no [[alerts.channels]] configured", field="alerts")
    now = utcnow()
    alert = Alert(
        event="test", connection=loaded.settings.default_connection or "-", run_id=None, severity="info",
        title="prepaid-sync: test alert",
        text=f"A test alert from prepaid-sync on {socket.gethostname()} at {now:%Y-%m-%d %H:%M:%S} UTC. "
        "If you can read this, the channel works.", fields={"test": True})
    results: list[dict[str, Any]] = []
    for ch in chosen:
        try:
            send(ch, alert, now=now, timeout=rules.timeout_seconds)
            results.append({"channel": ch.name, "kind": ch.kind, "ok": True, "error": None})
        except DeliveryError as exc:
            results.append({"channel": ch.name, "kind": ch.kind, "ok": False, "error": exc.message})
    if as_json:
        emit_json({"channels": results})
    else:
        table = Table(title="alert test")
        for col in ("channel", "kind", "result"):
            table.add_column(col)
        for r in results:
            table.add_row(r["channel"], r["kind"],
                          Text("delivered", "green") if r["ok"] else Text(r["error"], "red"))
        out.print(table)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


@app.command("pending")
def pending_cmd(config: ConfigOpt = None,
                limit: Annotated[int, typer.Option("--limit", help="Most rows to show.")] = 200,
                as_json: JsonOpt = False) -> None:
    """Alerts not delivered (yet): pending, being sent, or dead, with attempts and the last error."""
    with handled(as_json):
        engine = database(load_settings(config or state.config).path, write=False)
        rows = unsent(engine, limit=limit)
    if as_json:
        emit_json({"alerts": rows})
        return
    if not rows:
        out.print("no undelivered alerts")
        return
    table = Table(title=f"undelivered alerts ({len(rows)})")
    for col in ("id", "connection", "event", "channel", "run", "status", "attempts", "next attempt",
                "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["connection"], r["event"], r["channel"], str(r["run_id"] or
                                                                                   "-"), r["status"],
                      str(r["attempts"]),
                      f"{r['next_attempt_at']:%Y-%m-%d %H:%M:%S}" if r["status"] != "dead" else "-",
                      Text(r["last_error"] or ""))
    out.print(table)
