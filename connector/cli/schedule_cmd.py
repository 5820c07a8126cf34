"""`prepaid-sync schedule`: the long-running worker, or `--once` for cron and systemd timers."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from connector import logs
from connector.cli.common import database, emit_json, handled, out, state
from connector.config import LoadedSettings, load_settings
from connector.timeutil import utcnow
from connector.ops.alerts import deliver_due, load_alerts, notify_run
from connector.ops.history import FAILURES
from connector.ops.scheduler import Worker, serve, worker_signals
from connector.sync.lock import default_holder

log = logging.getLogger(__name__)


def schedule(
    config: Annotated[str | None,
                      typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Run every due connection once and exit "
                     "(for cron or a systemd timer).")] = False,
    worker_id: Annotated[
        str | None,
        typer.Option("--worker-id", help="Name of this worker in locks and "
                     "run history (default host:pid).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --once: print one JSON document.")] = False
) -> None:
    """Run each connection's syncs on its schedule; several workers may share one PostgreSQL database."""
    with handled(as_json):
        worker = build_worker(config, worker_id)
    if once:
        with worker_signals(worker):
            outcomes = worker.run_once()
        worker.close()
        if as_json:
            emit_json({"worker": worker.worker_id, "runs": [o.to_dict() for o in outcomes]})
        else:
            table = Table(title=f"schedule --once ({worker.worker_id})")
            for col in ("connection", "action", "trigger", "run", "status", "reason", "next run (UTC)"):
                table.add_column(col)
            for o in outcomes:
                table.add_row(o.connection, o.action, o.trigger, str(o.run_id or ""), o.status, o.reason,
                              f"{o.next_run_at:%Y-%m-%d %H:%M:%S}" if o.next_run_at else "")
            out.print(table if outcomes else "nothing was due")
        if any(o.status in FAILURES for o in outcomes):
            raise typer.Exit(1)
        return
    code = serve(worker)
    sys.stdout.flush()
    sys.stderr.flush()
    if code != 0:
        os._exit(code)  # a run thread that would not stop must not hold the process open
    raise typer.Exit(0)


def build_worker(config: str | None, worker_id: str | None, engine: Engine | None = None) -> Worker:
    """The scheduler worker of `schedule` (and of `serve --schedule`): settings, database, log setup,
    alerts; exit 2 when no connection has a schedule. `engine`: the caller's database, if it has one."""
    loaded = load_settings(config or state.config)
    engine = engine or database(loaded.path, write=True)
    worker = Worker(loaded, engine, worker_id=worker_id or default_holder())
    if not logs.is_configured():
        logs.setup_logging(loaded.settings.log_format, "INFO")
    logs.bind_worker(worker.worker_id)
    wire_alerts(worker, loaded, engine)
    wire_push(worker, loaded, engine)
    if not worker.book.scheduled():
        out.print("no connection has a schedule; set `schedule = \"every 15 minutes\"` (or a cron) under "
                  "[connections.NAME] in the config", markup=False)
        raise typer.Exit(2)
    return worker


def wire_alerts(worker: Worker, loaded: LoadedSettings, engine: Engine) -> None:
    """Alert after each run and retry waiting alerts on every poll (when `[alerts]` has channels)."""
    rules = load_alerts(loaded.settings.alerts, set(loaded.settings.connections))
    if rules.channels:
        worker.notify = lambda name, run_id: notify_run(engine, rules, name, run_id, utcnow())
        worker.deliver = lambda: deliver_due(engine, rules, utcnow())


def wire_push(worker: Worker, loaded: LoadedSettings, engine: Engine) -> None:
    """Renew the push channels that are due on every poll (a database read when none is)."""
    from connector.app import renew_push_channels
    from connector.push.channels import Channels

    channels = Channels(engine)
    worker.renew = lambda: renew_push_channels(loaded, engine, channels)
