"""`prepaid-sync sync run`, `init` and `mappings check`."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from connector.cli.common import database, emit_json, err, handled, out, state
from connector.cli.progress import RunProgress
from connector.adapters.http import connection_failure
from connector.adapters.sandbox_http import INFO_PATH
from connector.config import (
    CONFIG_DB,
    FXIAOKE_SECRETS,
    ZOHO_SECRETS,
    Connection,
    LoadedSettings,
    Settings,
    load_settings,
    render,
)
from connector.errors import ConfigError, ConnectorError
from connector.adapters.errors import AuthError, CrmConnectionError, CrmError
from connector.timeutil import utcnow
from connector.mapping import load_mapping
from connector.mapping.loader import default_mapping_path
from connector.ops.alerts import load_alerts, notify_run
from connector.ops.signals import stop_signals
from connector.sync import RunReport, SyncEngine
from connector.sync.checks import check_online
from connector.app import build_adapter, build_sync_engine

sync_app = typer.Typer(help="Run syncs between the CRM and the ledger.", no_args_is_help=True,
                       rich_markup_mode=None)
mappings_app = typer.Typer(help="Validate mapping files.", no_args_is_help=True, rich_markup_mode=None)
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")]
ConnOpt = Annotated[str | None, typer.Option("--connection", help="Connection name from the config.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


DRY_RUN_SHOWN = 50  # customers a dry run prints; the rest are counted ("and N more")

def print_report(report: RunReport, *, title: str = "sync run") -> None:
    """A rich summary of one run."""
    table = Table(
        title=f"{title}: {report.status}" + (" (dry run: nothing changed)" if report.dry_run else ""),
        show_header=False)
    pulled = ", ".join(f"{k} {v}" for k, v in report.pulled.items()) or "-"
    for label, value in [("pulled", pulled), ("deposits posted", report.deposits_posted),
                         ("consumption posted", report.consumptions_posted),
                         ("reversals posted", report.reversals_posted),
                         ("contract terms set", report.terms_set),
                         ("records written", report.records_written), ("tasks created", report.tasks_created),
                         ("tasks closed", report.tasks_closed),
                         ("flags opened / cleared", f"{report.flags_opened} / {report.flags_cleared}"),
                         ("customers held (a record came incomplete)", report.customers_held),
                         ("API calls", report.api_calls), ("errors", report.error_total)]:
        table.add_row(label, str(value))
    out.print(table)
    if report.reason:
        out.print(Text.assemble(("  why: ", "bold"), report.reason), highlight=False)
    if report.guard is not None:
        lead = ("[bold red]held[/]" if report.status == "held" else "[yellow]a real run would be held[/]"
                if report.dry_run else "[yellow]let through by --allow-mass-change[/]")
        text = report.guard["reason"].removeprefix("held by the mass-change guard before any CRM write: ")
        out.print(f"{lead} by the mass-change guard: {escape(text)}", highlight=False)
    for e in report.errors[:10]:
        out.print(Text.assemble(("  " + e["stage"], "yellow"), f" {e['record']} {e['field']}: {e['reason']}"),
                  highlight=False)
    if report.error_total > 10:
        out.print(f"  ... and {report.error_total - 10} more (recorded in the sync_errors table)")
    if report.dry_run:
        shown = list(report.changes.items())[:DRY_RUN_SHOWN]
        for key, change in shown:
            out.print(f"[bold]{escape(key)}[/]")
            for p in change["postings"]:
                out.print(f"  ledger: {p}", markup=False, highlight=False)
            for f, diff in change["fields"].items():
                out.print(f"  field {f}: {diff}", markup=False, highlight=False)
            for tsk in change["tasks_open"]:
                out.print(f"  open task: {tsk}", markup=False, highlight=False)
            for tsk in change["tasks_close"]:
                out.print(f"  close task: {tsk}", markup=False, highlight=False)
        if len(report.changes) > len(shown):
            out.print(f"  ... and {len(report.changes) - len(shown)} more customers with changes "
                      "(sync run --dry-run --json lists them all)", markup=False, highlight=False)


def engine_for(loaded: LoadedSettings, name: str | None, db: Engine | None = None) -> tuple[SyncEngine, str]:
    """The SyncEngine of a configured connection, on `db` (default: the database of the command's rule)."""
    conn_name, _conn = loaded.settings.connection(name)
    return build_sync_engine(loaded, conn_name, db or database(loaded.path, write=True)), conn_name


@sync_app.command("run")
def run_cmd(connection: ConnOpt = None, config: ConfigOpt = None, dry_run: Annotated[
    bool,
    typer.Option("--dry-run", help="Plan only: show postings, field changes, "
                 "tasks and API calls; change nothing.")] = False,
            full: Annotated[bool,
                            typer.Option("--full", help="Ignore cursors and re-read everything.")] = False,
            allow_mass_change: Annotated[
                bool,
                typer.Option(
                    "--allow-mass-change",
                    help="Let this run through the mass-change guard: write even when it "
                    "changes more customers, flags or tasks at once than the connection's limits allow."
                )] = False, as_json: JsonOpt = False) -> None:
    """Pull CRM changes, post them to the ledger, reconcile, and write back what changed."""
    with handled(as_json):
        loaded = load_settings(config or state.config)
        rules = load_alerts(loaded.settings.alerts, set(loaded.settings.connections))
        engine, name = engine_for(loaded, connection)
        with graceful_signals() as stop:
            if as_json:
                report = engine.run(full=full, dry_run=dry_run, should_stop=stop,
                                    allow_mass_change=allow_mass_change)
            else:
                with RunProgress(err) as progress:
                    engine.progress = progress
                    engine.adapter.set_wait_listener(progress.waiting)
                    report = engine.run(full=full, dry_run=dry_run, should_stop=stop,
                                        allow_mass_change=allow_mass_change)
        engine.adapter.close()
        if rules.channels and not dry_run:
            notify_run(engine.engine, rules, name, report.run_id, utcnow())  # never raises
    if as_json:
        emit_json(report.to_dict())
    elif report.problems:
        print_problems(report)
    else:
        print_report(report)
    if report.problems:
        raise typer.Exit(2)
    if report.status == "held":
        raise typer.Exit(3)  # refused by a rule (the guard), nothing written: like a ledger rule's refusal
    if report.status == "failed":
        raise typer.Exit(1)


def print_problems(report: RunReport) -> None:
    """A run the mapping check stopped: its problems, one a line, as `mappings check --online` prints them."""
    err.print(
        f"[bold red]error:[/] run {report.run_id} of {report.connection} stopped before reading or writing "
        "anything: the mapping does not fit the CRM's fields", highlight=False)
    for p in report.problems:
        err.print(f"[red]{escape(p['path'])}[/]: {escape(p['reason'])}", highlight=False)
    err.print("Correct the mapping file; `prepaid-sync mappings check --online` lists the same problems.",
              highlight=False)


def graceful_signals() -> AbstractContextManager[Callable[[], str | None]]:
    """`sync run`'s SIGTERM/SIGINT: stop after the current batch; a second signal aborts at once."""
    return stop_signals(
        lambda name: err.print(f"{name}: stopping after the current batch (send it again to abort now)"),
        lambda name: err.print(f"{name} again: aborting now"))


def init(crm: Annotated[
    str | None,
    typer.Option("--crm", help="zoho or fxiaoke (default: the CRM the --sandbox "
                 "emulates, else zoho).", show_default=False)] = None,
         sandbox: Annotated[str | None,
                            typer.Option(
                                "--sandbox", help="URL of a running sandbox (`prepaid-sync "
                                "sandbox serve` prints it); the fake credentials it accepts are "
                                "read from it and go into .env.")] = None,
         directory: Annotated[Path, typer.Option("--dir", help="Where to write the files.")] = Path("."),
         force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False) -> None:
    """Write prepaid-sync.toml, a copy of the default mapping and (with --sandbox) .env; print what to run
    next."""
    with handled(False):
        paths = write_config(directory, crm, sandbox=sandbox, force=force)
    for p in paths:
        out.print(f"wrote {p}", markup=False, highlight=False)
    cfg = paths[0]
    flag = "" if cfg.resolve().parent == Path.cwd().resolve() else f" --config {shlex.quote(str(cfg))}"
    names = (ZOHO_SECRETS
             if paths[1].stem == "zoho" else FXIAOKE_SECRETS).values()  # paths[1]: mappings/CRM.yaml
    steps = [] if sandbox else [f"set {', '.join(names)} in the environment or in {cfg.parent / '.env'} "
                                "(never in the config file)"]
    steps += [f"prepaid-sync mappings check --online{flag}    # the mapping against the CRM's fields",
              f"prepaid-sync sync run --dry-run{flag}    # what a first sync would do; changes nothing",
              f"prepaid-sync sync run{flag}",
              f"prepaid-sync report{flag}"]
    out.print("Next:", highlight=False)
    for step in steps:
        out.print(f"  {step}", markup=False, highlight=False, soft_wrap=True)


def sandbox_credentials(url: str, crm: str | None = None) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Ask the sandbox at `url` which CRM it emulates and which fake credentials it accepts: its CRM, the
    connection settings and the .env values for it. Refuses a URL that does not answer as a sandbox of
    `crm`."""
    base = url.rstrip("/")
    try:
        resp = requests.get(base + INFO_PATH, timeout=10)
    except requests.RequestException as exc:
        raise ConfigError(f"--sandbox {base}: {connection_failure(exc, base)} (start one with `prepaid-sync "
                          f"sandbox serve --crm {crm or 'zoho'} --seed 100` and give the URL it prints)",
                          field="sandbox") from None
    try:
        info = resp.json()
    except ValueError:
        info = None
    kind = info.get("sandbox") if isinstance(info, dict) else None
    wanted = ZOHO_SECRETS if kind == "zoho" else FXIAOKE_SECRETS
    if resp.status_code != 200 or kind not in ("zoho", "fxiaoke") or not all(info.get(k) for k in wanted):
        raise ConfigError(
            f"--sandbox {base} does not answer as a prepaid-sync sandbox (GET {INFO_PATH}: HTTP "
            f"{resp.status_code}); give the URL that `prepaid-sync sandbox serve` prints", field="sandbox")
    if crm is not None and crm != kind:
        raise ConfigError(
            f"--sandbox {base} is a {kind} sandbox, not {crm}; use --crm {kind} (or leave --crm out)",
            field="crm")
    env = {var: str(info[key]) for key, var in wanted.items()}
    if kind == "zoho":
        return kind, {"accounts_url": base, "api_domain": base}, env
    return kind, {"base_url": base, "open_user_id": str(info.get("open_user_id") or "") or None}, env


def write_config(directory: Path, crm: str | None, *, sandbox: str | None = None, force: bool = False,
                 database_url: str | None = None, env: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> list[Path]:
    """Write config, mapping copy and (for a sandbox) .env; returns the paths written, the config first.

    The database is `prepaid-sync.db` beside the config (a relative path, so a copied folder has its own)."""
    if crm not in (None, "zoho", "fxiaoke"):
        raise ConfigError(f"--crm must be zoho or fxiaoke, not {crm!r}", field="crm")
    cfg_path = directory / "prepaid-sync.toml"
    if cfg_path.exists() and not force:
        raise ConfigError(f"{cfg_path} exists; use --force to overwrite", file=str(cfg_path))
    settings_extra: dict[str, Any] = dict(extra or {})
    if sandbox:
        crm, conn_extra, env_values = sandbox_credentials(sandbox, crm)
        settings_extra.update(conn_extra)
        env = {**env_values, **(env or {})}
    crm = crm or "zoho"
    if crm == "fxiaoke":
        settings_extra.setdefault("base_url", "https://open.fxiaoke.com")
    conn = Connection(**{"crm": crm, "mapping": f"mappings/{crm}.yaml", "schedule": "every 15 minutes",
                         **settings_extra})
    settings = Settings(database_url=database_url or CONFIG_DB, default_connection=crm,
                        connections={crm: conn})
    directory.mkdir(parents=True, exist_ok=True)
    map_path = directory / "mappings" / f"{crm}.yaml"
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


def metadata_unavailable(exc: CrmError, name: str, conn: Connection, folder: Path) -> ConnectorError:
    """One line for a CRM failure that kept `mappings check --online` from reading any field metadata:
    what failed and the fix (credentials: exit 2, like any other configuration mistake; else exit 1)."""
    head = f"cannot check the mapping of connection {name!r} against the CRM: {exc}"
    if isinstance(exc, AuthError):
        names = ", ".join(conn.env_names().values())
        return ConfigError(
            f"{head}; the CRM refused the credentials: correct {names} in the environment or in "
            f"{folder / '.env'}", field="secrets")
    if isinstance(exc, CrmConnectionError):
        return ConnectorError(
            f"{head}; nothing answered: is the CRM (or the sandbox) running at that address, "
            "and is the connection's URL in the config right?")
    return ConnectorError(f"{head}; try again later")


@mappings_app.command("check")
def check_cmd(connection: ConnOpt = None, config: ConfigOpt = None,
              mapping: Annotated[Path | None,
                                 typer.Option("--mapping", help="Check this file (offline).")] = None,
              online: Annotated[bool,
                                typer.Option("--online", help="Also check against the CRM's field "
                                             "metadata.")] = False,
              create_fields: Annotated[
                  bool,
                  typer.Option("--create-fields", help="Create missing connector-owned "
                               "custom fields where the CRM allows.")] = False,
              as_json: JsonOpt = False) -> None:
    """Validate a mapping: schema offline; with --online, fields, types, writability and picklist values."""
    with handled(as_json):
        if mapping is not None and not online:
            load_mapping(mapping)
            problems: list[dict[str, str]] = []
            where = str(mapping)
        else:
            loaded = load_settings(config or state.config)
            _name, conn = loaded.settings.connection(connection)
            path = loaded.mapping_path(conn)
            m = load_mapping(path)
            where = str(path)
            problems = []
            if online:
                adapter = build_adapter(conn, m)
                try:
                    problems = check_online(adapter, m, create_fields=create_fields)
                except CrmError as exc:
                    raise metadata_unavailable(exc, _name, conn, loaded.path.parent) from None
                finally:
                    adapter.close()
    if as_json:
        emit_json({"mapping": where, "ok": not problems, "problems": problems})
    else:
        if problems:
            for p in problems:
                err.print(Text.assemble((p["path"], "red"), f": {p['reason']}"), highlight=False)
        else:
            out.print(f"{where}: ok" + (" (checked against the CRM)" if online else ""))
    if problems:
        raise typer.Exit(2)
