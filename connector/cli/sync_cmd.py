"""`prepaid-sync sync run`, `init` and `mappings check`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from connector.cli.common import config_db, emit_json, err, handled, out
from connector.cli.progress import RunProgress
from connector.config import Connection, LoadedSettings, Settings, load_settings, render
from connector.errors import ConfigError
from connector.ledger.tables import utcnow
from connector.mapping import load_mapping
from connector.mapping.loader import default_mapping_path
from connector.ops.alerts import load_alerts, notify_run
from connector.ops.signals import stop_signals
from connector.sync import RunReport, SyncEngine
from connector.sync.checks import check_online
from connector.sync.factory import build_adapter, build_sync_engine

sync_app = typer.Typer(help="Run syncs between the CRM and the ledger.", no_args_is_help=True)
mappings_app = typer.Typer(help="Validate mapping files.", no_args_is_help=True)
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")]
ConnOpt = Annotated[str | None, typer.Option("--connection", "-c", help="Connection name from the config.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def print_report(report: RunReport, *, title: str = "sync run") -> None:
    """A rich summary of one run."""
    table = Table(title=f"{title}: {report.status}" + (" (dry run: nothing changed)" if report.dry_run else ""),
                  show_header=False)
    pulled = ", ".join(f"{k} {v}" for k, v in report.pulled.items()) or "-"
    for label, value in [("pulled", pulled), ("deposits posted", report.deposits_posted),
                         ("consumption posted", report.consumptions_posted),
                         ("reversals posted", report.reversals_posted), ("contract terms set", report.terms_set),
                         ("records written", report.records_written), ("tasks created", report.tasks_created),
                         ("tasks closed", report.tasks_closed),
                         ("flags opened / cleared", f"{report.flags_opened} / {report.flags_cleared}"),
                         ("API calls", report.api_calls), ("errors", report.error_total)]:
        table.add_row(label, str(value))
    out.print(table)
    if report.reason and report.status != "failed":  # a failure's reason is listed with the errors below
        out.print(f"{report.status}: {report.reason}", highlight=False)
    for e in report.errors[:10]:
        out.print(f"  [yellow]{e['stage']}[/] {e['record']} {e['field']}: {e['reason']}", highlight=False)
    if report.error_total > 10:
        out.print(f"  ... and {report.error_total - 10} more (recorded in the sync_errors table)")
    if report.dry_run:
        for key, change in list(report.changes.items())[:50]:
            out.print(f"[bold]{key}[/]")
            for p in change["postings"]:
                out.print(f"  ledger: {p}", highlight=False)
            for f, diff in change["fields"].items():
                out.print(f"  field {f}: {diff}", highlight=False)
            for tsk in change["tasks_open"]:
                out.print(f"  open task: {tsk}", highlight=False)
            for tsk in change["tasks_close"]:
                out.print(f"  close task: {tsk}", highlight=False)


def engine_for(loaded: LoadedSettings, name: str | None) -> tuple[SyncEngine, str]:
    """The SyncEngine of a configured connection."""
    conn_name, _conn = loaded.settings.connection(name)
    db = config_db(loaded.settings)
    return build_sync_engine(loaded, conn_name, db), conn_name


@sync_app.command("run")
def run_cmd(connection: ConnOpt = None, config: ConfigOpt = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: show postings, field changes, "
                                                  "tasks and API calls; change nothing.")] = False,
            full: Annotated[bool, typer.Option("--full", help="Ignore cursors and re-read everything.")] = False,
            as_json: JsonOpt = False) -> None:
    """Pull CRM changes, post them to the ledger, reconcile, and write back what changed."""
    with handled(as_json):
        loaded = load_settings(config)
        rules = load_alerts(loaded.settings.alerts, set(loaded.settings.connections))
        engine, name = engine_for(loaded, connection)
        with graceful_signals() as stop:
            if as_json:
                report = engine.run(full=full, dry_run=dry_run, should_stop=stop)
            else:
                with RunProgress(err) as progress:
                    engine.progress = progress
                    report = engine.run(full=full, dry_run=dry_run, should_stop=stop)
        engine.adapter.close()
        if rules.channels and not dry_run:
            notify_run(engine.engine, rules, name, report.run_id, utcnow())  # never raises
    if as_json:
        emit_json(report.to_dict())
    else:
        print_report(report)
    if report.status == "failed":
        raise typer.Exit(1)


def graceful_signals() -> AbstractContextManager[Callable[[], str | None]]:
    """`sync run`'s SIGTERM/SIGINT: stop after the current batch; a second signal aborts at once."""
    return stop_signals(
        lambda name: err.print(f"{name}: stopping after the current batch (send it again to abort now)"),
        lambda name: err.print(f"{name} again: aborting now"))


def init(crm: Annotated[str, typer.Option("--crm", help="zoho or fxiaoke")] = "zoho",
         sandbox: Annotated[str | None, typer.Option("--sandbox", help="URL of a running sandbox "
                                                     "(`prepaid-sync sandbox serve`); its fake credentials go "
                                                     "into .env")] = None,
         sandbox_seed: Annotated[int, typer.Option("--sandbox-seed", help="Fxiaoke: the sandbox's --seed "
                                                   "(its fake credentials derive from it).")] = 0,
         directory: Annotated[Path, typer.Option("--dir", help="Where to write the files.")] = Path("."),
         force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False) -> None:
    """Write prepaid-sync.toml and copy the default mapping (never writes real credentials)."""
    with handled(False):
        paths = write_config(directory, crm, sandbox=sandbox, sandbox_seed=sandbox_seed, force=force)
    for p in paths:
        out.print(f"wrote {p}")
    if not sandbox:
        out.print("Set the secrets in the environment variables named under [connections.*.secrets] "
                  "(or a local .env), then run `prepaid-sync mappings check --online`.")


def sandbox_credentials(crm: str, url: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """Connection settings and .env values for a running sandbox (its well-known fake credentials)."""
    base = url.rstrip("/")
    if crm == "zoho":
        from connector.adapters.zoho.sandbox import SandboxConfig

        cfg = SandboxConfig()
        return ({"accounts_url": base, "api_domain": base},
                {"ZOHO_CLIENT_ID": cfg.client_id, "ZOHO_CLIENT_SECRET": cfg.client_secret,
                 "ZOHO_REFRESH_TOKEN": cfg.refresh_token})
    from connector.adapters.fxiaoke.sandbox import SandboxApp, SandboxConfig

    creds = SandboxApp(SandboxConfig(seed=seed)).credentials
    return ({"base_url": base, "open_user_id": creds.open_user_id},
            {"FXIAOKE_APP_ID": creds.app_id, "FXIAOKE_APP_SECRET": creds.app_secret,
             "FXIAOKE_PERMANENT_CODE": creds.permanent_code})


def write_config(directory: Path, crm: str, *, sandbox: str | None = None, sandbox_seed: int = 0,
                 force: bool = False,
                 database_url: str | None = None, env: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> list[Path]:
    """Write config, mapping copy and (for a sandbox) .env; returns the paths written."""
    if crm not in ("zoho", "fxiaoke"):
        raise ConfigError(f"--crm must be zoho or fxiaoke, not {crm!r}", field="crm")
    directory.mkdir(parents=True, exist_ok=True)
    cfg_path, map_path = directory / "prepaid-sync.toml", directory / "mappings" / f"{crm}.yaml"
    if cfg_path.exists() and not force:
        raise ConfigError(f"{cfg_path} exists; use --force to overwrite", file=str(cfg_path))
    settings_extra: dict[str, Any] = dict(extra or {})
    if sandbox:
        conn_extra, env_values = sandbox_credentials(crm, sandbox, sandbox_seed)
        settings_extra.update(conn_extra)
        env = {**env_values, **(env or {})}
    elif crm == "fxiaoke":
        settings_extra.setdefault("base_url", "https://open.fxiaoke.com")
    conn = Connection(**{"crm": crm, "mapping": f"mappings/{crm}.yaml", "schedule": "every 15 minutes",
                         **settings_extra})
    settings = Settings(database_url=database_url or f"sqlite:///{(directory / 'prepaid-sync.db').resolve()}",
                        default_connection=crm, connections={crm: conn})
    map_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_mapping_path(crm), map_path)
    cfg_path.write_text(render(settings), encoding="utf-8")
    written = [cfg_path, map_path]
    if env:
        env_path = directory / ".env"
        env_path.write_text("# sandbox credentials (fake; never put real secrets in files you share)\n" +
                            "".join(f"{k}={json.dumps(v)}\n" for k, v in env.items()), encoding="utf-8")
        env_path.chmod(0o600)
        written.append(env_path)
    return written


@mappings_app.command("check")
def check_cmd(connection: ConnOpt = None, config: ConfigOpt = None,
              mapping: Annotated[Path | None, typer.Option("--mapping", help="Check this file (offline).")] = None,
              online: Annotated[bool, typer.Option("--online", help="Also check against the CRM's field "
                                                   "metadata.")] = False,
              create_fields: Annotated[bool, typer.Option("--create-fields", help="Create missing connector-owned "
                                                          "custom fields where the CRM allows.")] = False,
              as_json: JsonOpt = False) -> None:
    """Validate a mapping: schema offline; with --online, fields, types, writability and picklist values."""
    with handled(as_json):
        if mapping is not None and not online:
            load_mapping(mapping)
            problems: list[dict[str, str]] = []
            where = str(mapping)
        else:
            loaded = load_settings(config)
            _name, conn = loaded.settings.connection(connection)
            path = loaded.mapping_path(conn)
            m = load_mapping(path)
            where = str(path)
            problems = []
            if online:
                adapter = build_adapter(conn, m)
                problems = check_online(adapter, m, create_fields=create_fields)
                adapter.close()
    if as_json:
        emit_json({"mapping": where, "ok": not problems, "problems": problems})
    else:
        if problems:
            for p in problems:
                err.print(f"[red]{p['path']}[/]: {p['reason']}", highlight=False)
        else:
            out.print(f"{where}: ok" + (" (checked against the CRM)" if online else ""))
    if problems:
        raise typer.Exit(2)
