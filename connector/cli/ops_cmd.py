"""`prepaid-sync status`, `prepaid-sync runs` and `prepaid-sync runs show RUN_ID`."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from connector.cli.common import database, emit_json, handled, out, state
from connector.config import load_settings, locate_config
from connector.timeutil import zone
from connector.ops.status import ConnectionStatus, RunDetail, RunRow, all_statuses, list_runs, run_detail

ConfigOpt = Annotated[str | None, typer.Option("--config", help="Config file (default ./prepaid-sync.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
STATUS_STYLE = {"ok": "green", "partial": "yellow", "failed": "bold red", "crashed": "bold red",
                "interrupted": "yellow", "budget": "yellow", "running": "cyan", "held": "bold red"}
TRIGGER_WORDS = {"schedule": "scheduled", "manual": "manual", "recovery": "taken over after a crash"}
COUNT_LABELS = {
    "pulled": "pulled", "deposits_posted": "deposits", "consumptions_posted": "consumption",
    "reversals_posted": "reversals", "terms_set": "terms", "records_written": "fields written",
    "tasks_created": "tasks opened", "tasks_closed": "tasks closed", "flags_opened": "flags opened",
    "flags_cleared": "flags cleared", "customers_held": "customers held"
}

runs_app = typer.Typer(
    rich_markup_mode=None,
    help="Run history: `runs` lists recent runs, `runs show RUN_ID` shows one with its errors.")


# ---- formatting helpers ----------------------------------------------------------------------------

def _when(value: datetime | None, now: datetime | None = None) -> str:
    """`16:45:02` on the same day as `now`, else `2026-01-14 16:45:02`; '-' for None."""
    if value is None:
        return "-"
    if now is not None and value.date() == now.date():
        return f"{value:%H:%M:%S}"
    return f"{value:%Y-%m-%d %H:%M:%S}"


def _span(seconds: float | None) -> str:
    """`2m 3s`, `1h 4m`, `3d 2h`; '-' for None."""
    if seconds is None:
        return "-"
    s = int(abs(seconds))
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // small_size
            return f"{s // size}{unit}" + (f" {rest}{small}" if rest else "")
    return f"{abs(seconds):.1f}s" if abs(seconds) < 10 else f"{s}s"


def _relative(value: datetime, now: datetime) -> str:
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def _counts(counts: dict[str, int]) -> str:
    parts = [f"{label} {counts[key]:,}" for key, label in COUNT_LABELS.items() if counts.get(key)]
    return ", ".join(parts) or "nothing changed"


# ---- status ----------------------------------------------------------------------------------------

def _last_run_cell(s: ConnectionStatus) -> str:
    r = s.last_finished
    if r is None:
        return "[dim]no run recorded yet[/]" if s.last_run is None else "[dim]none finished yet[/]"
    head = f"#{r.id} {_status(r.status)}"
    if r.trigger:
        head += f" · {escape(TRIGGER_WORDS.get(r.trigger, r.trigger))}"
    head += f" · started {_when(r.started_at, s.now)} ({_relative(r.started_at, s.now)})"
    if r.finished_at is not None:
        head += f" · took {_span(r.duration_s)}"
    extras = []
    if r.api_calls is not None:
        extras.append(f"{r.api_calls:,} API calls")
    if r.error_total:
        extras.append(f"[yellow]{r.error_total:,} record error(s)[/]")
    if extras:
        head += "\n" + ", ".join(extras)
    if r.status not in ("running", "crashed") or r.counts:
        head += ("; " if extras else "\n") + _counts(r.counts)
    if r.reason:
        style = "red" if r.status in ("failed", "crashed") else "yellow"
        head += f"\n[{style}]{escape(r.reason)}[/]"
    return head


def _next_run_cell(s: ConnectionStatus) -> str:
    if s.schedule is None:
        return "[dim]not scheduled[/]"
    if s.next_run_at is None:
        return f"[yellow]never[/] ({escape(s.schedule)})"
    text = f"{_when(s.next_run_at, s.now)} ({_relative(s.next_run_at, s.now)}), {escape(s.schedule)}"
    if s.next_run_source == "config":
        text += "\n[dim]computed from the config: no worker has picked this connection up yet[/]"
    elif s.next_run_at < s.now and s.running is None:
        text += "\n[yellow]overdue: is a `prepaid-sync schedule` worker running?[/]"
    if s.missed:
        text += f"\n[yellow]{s.missed} run(s) missed (due too long ago to start)[/]"
    if s.last_finished is not None and s.last_finished.status == "held":
        text += (
            f"\n[yellow]waits for a person: run #{s.last_finished.id} was held by the mass-change guard; "
            f"`prepaid-sync sync run --connection {escape(s.connection)} --allow-mass-change` "
            "lets its changes through, a changed mapping or guard setting lets the schedule try again[/]")
    return text


def _running_cell(s: ConnectionStatus) -> str:
    r = s.running
    if r is None:
        return "[dim]no[/]"
    who = f"run #{r.run_id}" + (f" by {escape(r.holder)}"
                                if r.holder else "") + f" (pid {r.pid} on {escape(r.host)})"
    if r.stale:
        return (f"[yellow]stale lease, expired at {_when(r.lease_until, s.now)}[/]: {who}, since "
                f"{_when(r.since, s.now)}, last heartbeat {_when(r.heartbeat_at, s.now)}\n"
                "[yellow]the holder stopped heart-beating; a worker will take the run over[/]")
    text = f"{who}, since {_when(r.since, s.now)} ({_span((s.now - r.since).total_seconds())})"
    if r.heartbeat_at is not None:
        text += f", heartbeat {_when(r.heartbeat_at, s.now)}"
    if r.lease_until is not None:
        text += f", lease until {_when(r.lease_until, s.now)}"
    return text


def _budget_cell(s: ConnectionStatus) -> str:
    b = s.budget
    if b.budget is None:
        return f"{b.used_today:,} {b.unit} on {b.day} (no daily budget)"
    text = f"{b.used_today:,} of {b.budget:,} {b.unit} on {b.day}, {b.remaining:,} left"
    if not b.remaining:
        return f"[bold red]{text}: runs stop until tomorrow[/]"
    return f"[yellow]{text}[/]" if b.remaining < b.budget * 0.1 else text


def _retry_cell(s: ConnectionStatus) -> str:
    f = s.failed_rows
    if not (f.errors_open or f.outbox_failed or f.outbox_pending or f.outbox_dead):
        return "[green]nothing waiting[/]"
    parts = []
    if f.errors_open:
        parts.append(f"[yellow]{f.errors_open:,} record(s) failing[/]")
    if f.outbox_failed:
        parts.append(f"[yellow]{f.outbox_failed:,} CRM write(s) failed[/]")
    if f.outbox_pending:
        parts.append(f"{f.outbox_pending:,} write(s) pending")
    if f.outbox_dead:
        parts.append(f"[bold red]{f.outbox_dead:,} write(s) given up[/]")
    return ", ".join(parts)


def status_table(s: ConnectionStatus) -> Table:
    """One connection's status as a two-column rich table."""
    table = Table(title=f"[bold]{escape(s.connection)}[/] · {s.crm} · times in {escape(s.zone)}",
                  title_justify="left", show_header=False, expand=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    failures = (f"[bold red]{s.consecutive_failures} in a row[/]" if s.consecutive_failures
                else "[green]0[/]")
    flags = ", ".join(f"{escape(code)} {n:,}" for code, n in s.open_flags.items()) or "none"
    alerts = f"{s.alerts_pending:,} pending" if s.alerts_pending else "none pending"
    if s.alerts_dead:
        alerts += f", [bold red]{s.alerts_dead:,} undeliverable[/]"
    for label, cell in (("last run", _last_run_cell(s)), ("next run", _next_run_cell(s)),
                        ("running now", _running_cell(s)), ("failures", failures),
                        ("API today", _budget_cell(s)), ("open flags", flags),
                        ("retry queue", _retry_cell(s)), ("alerts", alerts)):
        table.add_row(label, cell)
    return table


def status(config: ConfigOpt = None,
           connection: Annotated[str | None, typer.Option("--connection", help="Only this connection "
                                                          "(default: all).")] = None,
           as_json: JsonOpt = False) -> None:
    """Per connection: last run, next run, who runs it now, failures in a row, API use today, flags,
    retries."""
    with handled(as_json):
        loaded = load_settings(config or state.config)
        names = [loaded.settings.connection(connection)[0]] if connection else list(
            loaded.settings.connections)
        statuses = all_statuses(database(loaded.path, write=False), loaded, names)
    if as_json:
        emit_json({"connections": [s.model_dump(mode="json") for s in statuses]})
        return
    for i, s in enumerate(statuses):
        if i:
            out.print()
        out.print(status_table(s))


# ---- runs ------------------------------------------------------------------------------------------

def _open(config: str | None) -> tuple[Engine, dict[str, tzinfo]]:
    """The database and each connection's zone; without a config file, UTC."""
    path = locate_config(config or state.config)
    if path is None:
        return database(write=False), {}
    s = load_settings(path).settings
    return database(path, write=False), {name: zone(s.zone(conn)) for name, conn in s.connections.items()}


def runs_table(rows: list[RunRow], title: str, *, with_reason: bool = True) -> Table:
    """Runs as a rich table, newest first (`with_reason=False` leaves the reason column out)."""
    one = len({r.connection for r in rows}) == 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("run", *(() if one else ("connection",)), "status", "trigger", "started", "took", "API",
                 "errors"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("run", "API", "errors") else "left")
    if with_reason:
        table.add_column("reason", overflow="fold")
    for r in rows:
        status = _status(r.status) + (" [dim](dry)[/]" if r.dry_run else "")
        table.add_row(str(r.id), *(() if one else (escape(r.connection),)), status, escape(r.trigger or "-"),
                      f"{r.started_at:%m-%d %H:%M}", _span(r.duration_s) if r.finished_at else "-",
                      f"{r.api_calls:,}" if r.api_calls is not None else "-",
                      f"{r.error_total:,}" if r.error_total is not None else "-",
                      *((escape((r.reason or "")[:120]),) if with_reason else ()))
    return table


@runs_app.callback(invoke_without_command=True)
def runs(ctx: typer.Context,
         connection: Annotated[str | None,
                               typer.Option("--connection", help="Only this connection.")] = None,
         limit: Annotated[int,
                          typer.Option("--limit", "-n", min=1, help="How many runs, newest first.")] = 20,
         config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List recent runs, newest first (times in each connection's zone)."""
    if ctx.invoked_subcommand is not None:
        return
    with handled(as_json):
        engine, zones = _open(config)
        rows = list_runs(engine, connection, limit, zones=zones)
    if as_json:
        emit_json({"runs": [r.model_dump(mode="json") for r in rows]})
        return
    if not rows:
        out.print("no runs recorded" + (f" for connection {connection!r}" if connection else ""),
                  highlight=False)
        return
    wide = out.width >= 110
    out.print(runs_table(rows, f"last {len(rows)} run(s)" + (f" of {connection}" if connection else ""),
                         with_reason=wide))
    if not wide:  # reasons under the table rather than squeezed into a narrow column
        for r in rows:
            if r.reason:
                out.print(f"#{r.id} {_status(r.status)}: {escape(r.reason)}")
    out.print("[dim]`prepaid-sync runs show RUN_ID` shows a run's errors[/]")


def print_detail(d: RunDetail) -> None:
    """A run with its counts and errors, for people."""
    r = d.run
    table = Table(title=f"run #{r.id} · {escape(r.connection)}", title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    state_text = _status(
        r.status) + (f" (recorded as {r.recorded_status})" if r.recorded_status != r.status else "")
    rows = [("status", state_text), ("trigger", escape(r.trigger or "-")), ("worker", escape(r.worker or
                                                                                             "-")),
            ("pid", str(r.pid or "-")), ("started", _when(r.started_at)), ("finished", _when(r.finished_at)),
            ("took", _span(r.duration_s)),
            ("API calls", f"{r.api_calls:,}" if r.api_calls is not None else "-"),
            ("work done", _counts(r.counts)),
            ("pulled", ", ".join(f"{escape(k)} {v:,}" for k, v in d.pulled.items()) or "-"),
            ("errors", f"{r.error_total:,}" if r.error_total is not None else "-")]
    if r.reason:
        rows.append(("reason", escape(r.reason)))
    for label, value in rows:
        table.add_row(label, value)
    out.print(table)
    if d.errors_listed:
        shown = len(d.errors_listed)
        total = r.error_total if r.error_total is not None else shown
        errs = Table("stage", "record", "field", "reason",
                     title=f"errors listed by the run ({shown:,} of {total:,})", title_justify="left")
        for e in d.errors_listed:
            errs.add_row(escape(e.stage), escape(e.record), escape(e.field), escape(e.reason))
        out.print(errs)
    if d.error_rows:
        rows_t = Table("record", "stage", "attempts", "last seen", "now",
                       title="those records now (sync_errors rows this run hit last)", title_justify="left")
        rows_t.columns[0].overflow = "fold"
        for row in d.error_rows:
            now_text = ("[yellow]still failing[/]" if row.resolved_at is None
                        else f"[green]fixed {_when(row.resolved_at)}[/]")
            rows_t.add_row(escape(row.record), escape(row.stage), str(row.attempts), _when(row.last_seen),
                           now_text)
        out.print(rows_t)
    if d.error_rows:
        out.print(f"{d.still_open:,} of these records still fail.", highlight=False)
    out.print(f"{d.connection_open:,} record(s) of {escape(r.connection)} are failing now (all runs).",
              highlight=False)


@runs_app.command("show")
def show(run_id: Annotated[int, typer.Argument(help="The run id (first column of `prepaid-sync runs`).")],
         config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One run: its outcome, counts, and the errors it hit."""
    with handled(as_json):
        engine, zones = _open(config)
        detail = run_detail(engine, run_id, zones=zones)
    if as_json:
        emit_json(detail.model_dump(mode="json"))
        return
    print_detail(detail)
