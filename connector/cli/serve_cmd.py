"""`prepaid-sync serve`: the ledger API (and optionally the scheduler) in one process; `apikey ...`."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Annotated

import typer
from rich.table import Table

from connector import logs
from connector.cli.common import database, emit_json, handled, out, plain, state
from connector.cli.schedule_cmd import build_worker
from connector.errors import ConfigError

log = logging.getLogger(__name__)
apikey_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="API keys of `prepaid-sync serve`: create (shown once), list, revoke.")
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port; the start line says "
                                      "which).")] = 8080,
    config: Annotated[str | None,
                      typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (else the root --db, "
                                           "$PREPAID_SYNC_DB, the config's database_url, ./prepaid-sync.db).",
                                           show_default=False)] = None,
    schedule: Annotated[bool, typer.Option("--schedule", help="Also run the scheduler in this process "
                                           "(as `prepaid-sync schedule`).")] = False,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="With --schedule: name of this worker "
                                                  "(default host:pid).")] = None,
    metrics_auth: Annotated[str, typer.Option("--metrics-auth", help="`/metrics`: open (no key; the "
                                              "default, for a serve on a private address) or key (any "
                                              "API key).")] = "open",
) -> None:
    """Serve the ledger API over HTTP until SIGTERM; print one JSON line with its URL once listening."""
    from connector.api.app import create_app
    from connector.api.metrics import METRICS_AUTH
    from connector.api.server import ApiServer, announce, server_config
    from connector.ops.scheduler import serve as run_scheduler

    state.db = db or state.db
    with handled(False):
        engine = database(config, write=True)
        worker = build_worker(config, worker_id, engine) if schedule else None
        if metrics_auth not in METRICS_AUTH:
            raise ConfigError(f"--metrics-auth: {metrics_auth!r} is not one of {', '.join(METRICS_AUTH)}",
                              field="metrics_auth")
        app = create_app(engine, config or state.config,
                         metrics_auth="key" if metrics_auth == "key" else "open")
    if not logs.is_configured():
        logs.setup_logging("text", "INFO")
    logging.getLogger("uvicorn").setLevel(logging.INFO)
    stop = threading.Event()
    codes: list[int] = []
    thread = None
    if worker is not None:
        thread = threading.Thread(target=lambda: codes.append(run_scheduler(worker, install_signals=False,
                                                                             stop=stop)),
                                  name="scheduler", daemon=True)
        thread.start()

    def on_stop(name: str) -> None:
        if worker is not None:
            worker.request_stop(name)

    server = ApiServer(server_config(app, host, port), on_ready=lambda url: announce(url, schedule=schedule),
                       on_stop=on_stop)
    server.run()
    if app.state.push_hub is not None:
        app.state.push_hub.close()  # no new push-triggered run; one in progress finishes
    if worker is not None and thread is not None:
        worker.request_stop(worker.stop_reason or "shutdown")
        stop.set()
        thread.join()
    engine.dispose()
    log.info("prepaid-sync serve stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    code = max(codes, default=0) or (0 if server.started else 1)
    if code != 0:
        os._exit(code)  # a run thread that would not stop must not hold the process open
    raise typer.Exit(0)


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="A name for the key, e.g. billing.")],
                  scope: Annotated[str, typer.Option("--scope", help="read (balances, entries, "
                                                     "statements) or write (also posts money).")] = "read",
                  as_json: Json = False) -> None:
    """Create an API key and print it ONCE (only its hash is stored)."""
    from connector.api.keys import KeyStore

    with handled(as_json):
        key, text = KeyStore(database(write=True)).create(name, scope)
        if as_json:
            emit_json({**key.to_dict(), "key": text})
            return
        out.print(plain(f"created API key {key.name!r} (scope {key.scope}, {key.prefix}); store it now, "
                        "it is not shown again:"), soft_wrap=True)
        sys.stdout.write(text + "\n")


@apikey_app.command("list")
def apikey_list(as_json: Json = False) -> None:
    """List the API keys: name, scope, prefix, created, last used, revoked (never the secret)."""
    from connector.api.keys import KeyStore

    with handled(as_json):
        keys = KeyStore(database(write=False)).list()
        if as_json:
            emit_json([k.to_dict() for k in keys])
            return
        table = Table("name", "scope", "prefix", "created", "last used", "revoked")
        for k in keys:
            d = k.to_dict()
            table.add_row(plain(k.name), k.scope, k.prefix, *(
                (d[f] or "")[:19] for f in ("created_at", "last_used_at", "revoked_at")))
        out.print(table if keys else "no API keys; create one with `prepaid-sync apikey create NAME`")


@apikey_app.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Argument(help="The key's name.")],
                  as_json: Json = False) -> None:
    """Revoke an API key at once (every server on this database refuses it from the next request)."""
    from connector.api.keys import KeyStore

    with handled(as_json):
        key = KeyStore(database(write=True)).revoke(name)
        if as_json:
            emit_json(key.to_dict())
        else:
            out.print(plain(f"revoked API key {key.name!r} ({key.prefix})"))
