"""`prepaid-sync notifications enable|disable|status`: a connection's CRM push channel."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from connector.cli.common import database, emit_json, handled, out, plain, state
from connector.config import load_settings
from connector.errors import ConfigError

app = typer.Typer(help="CRM push: a change-notification channel per connection (Zoho only; Fxiaoke has "
                  "none and stays on polling).", no_args_is_help=True, rich_markup_mode=None)
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")]
ConnOpt = Annotated[str | None, typer.Option("--connection", help="Connection name (default: the only one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("enable")
def enable(public_url: Annotated[str, typer.Option("--public-url", help="The URL at which the CRM reaches "
                                                   "`prepaid-sync serve` (scheme, host, port).")],
           connection: ConnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Register the connection's change-notification channel at its CRM (again: with a new token)."""
    from connector.api.hooks import hook_url
    from connector.app import build_push_source
    from connector.push.channels import Channels

    with handled(as_json):
        if not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"--public-url must start with http:// or https://: {public_url!r}",
                              field="public_url")
        loaded = load_settings(config or state.config)
        name, conn = loaded.settings.connection(connection)
        engine = database(loaded.path, write=True)
        source = build_push_source(loaded, name, engine)
        if source is None:
            raise ConfigError(f"connection {name!r} is {conn.crm}, which has no record-change push; it stays "
                              "on polling", field="crm")
        channel = Channels(engine).enable(name, source, hook_url(public_url, conn.crm, name))
    if as_json:
        emit_json({"enabled": True, **channel.to_dict()})
        return
    out.print(plain(f"push enabled for {name}: channel {channel.channel_id} calls {channel.notify_url} "
                    f"(modules {channel.resources}) until {channel.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
                    "`prepaid-sync schedule` (or `serve --schedule`) renews it before then"))


@app.command("disable")
def disable(connection: ConnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Drop the connection's channel at the CRM and here (polling carries on)."""
    from connector.app import build_push_source
    from connector.push.channels import Channels

    with handled(as_json):
        loaded = load_settings(config or state.config)
        name, _conn = loaded.settings.connection(connection)
        engine = database(loaded.path, write=True)
        channels = Channels(engine)
        was = channels.get(name) is not None
        if was:
            channels.disable(name, build_push_source(loaded, name, engine))
    if as_json:
        emit_json({"connection": name, "disabled": was})
    else:
        out.print(plain(f"push disabled for {name}" if was else f"push was not enabled for {name}"))


@app.command("status")
def status(connection: ConnOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The push channel of each connection (or one): channel, URL, expiry, last renewal, calls."""
    from connector.push.channels import Channels

    with handled(as_json):
        loaded = load_settings(config or state.config)
        names = ([loaded.settings.connection(connection)[0]] if connection
                 else list(loaded.settings.connections))
        engine = database(loaded.path, write=False)
        found = {c.connection: c for c in Channels(engine).all()}
    rows = [{"connection": n, "enabled": n in found, **(found[n].to_dict() if n in found else {})}
            for n in names]
    if as_json:
        emit_json({"channels": rows})
        return
    table = Table(title="push channels")
    for col in ("connection", "channel", "notify url", "expires (UTC)", "renewed (UTC)", "calls", "refused",
                "last error"):
        table.add_column(col)
    for n in names:
        c = found.get(n)
        if c is None:
            table.add_row(plain(n), "not enabled (polling only)", "", "", "", "", "", "")
            continue
        table.add_row(plain(n), c.channel_id, plain(c.notify_url), f"{c.expires_at:%Y-%m-%d %H:%M:%S}",
                      f"{c.renewed_at:%Y-%m-%d %H:%M:%S}" if c.renewed_at else "", str(c.notices),
                      str(c.refused), plain(c.last_error or ""))
    out.print(table)
