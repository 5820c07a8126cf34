"""`prepaid-sync report ...` and `prepaid-sync statement ...`: finance reports, compliance and statements."""

from __future__ import annotations

import hashlib
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from connector.cli.common import database, emit_json, handled, out, state
from connector.compliance.custody import custody_report, previous_quarter, quarter_bounds
from connector.compliance.rules import load_rules
from connector.compliance.thresholds import threshold_warnings
from connector.errors import InvalidInput
from connector.reports import build_report
from connector.reports.attributes import CustomerAttributes, NoAttributes, StaticAttributes
from connector.reports.display import money
from connector.reports.html import to_html as report_html
from connector.reports.render import (
    CUSTOMER_COLUMNS,
    SUMMARY_COLUMNS,
    customer_rows,
    print_tables,
    summary_rows,
    to_csv,
    write_json,
)
from connector.reports.sync_attributes import for_connection
from connector.statements import StatementLoader
from connector.statements import to_csv as statement_csv
from connector.statements import to_html as statement_html
from connector.statements import to_json as statement_json
from connector.timeutil import day_bound, parse_datetime, zone

app = typer.Typer(no_args_is_help=False, help="Finance reports over the ledger, and compliance.",
                  rich_markup_mode=None)

AsOf = Annotated[str | None, typer.Option("--as-of", help="A date (end of that day, UTC) or date-time; "
                                          "default now.")]
Attributes = Annotated[
    Path | None,
    typer.Option("--attributes", help="CSV of CRM attributes: customer,name,owner,"
                 "tier,flags,kind (flags ';'-separated).")]
Config = Annotated[Path | None, typer.Option("--config", help="File with the [compliance] table and the "
                                             "connections (else $PREPAID_SYNC_CONFIG, else "
                                             "./prepaid-sync.toml, else defaults).")]
ConnectionOpt = Annotated[str | None, typer.Option("--connection", help="Take tier, owner, flags and names "
                                                   "from this connection's sync state (see --config).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
FORMATS = ("table", "json", "csv", "html")


def parse_as_of(value: str | None) -> datetime:
    """`2026-06-30` -> the last instant of that day (UTC); a date-time as given; None -> now."""
    parsed = parse_datetime(value, "as-of", end_of_day=True)  # a bare date: the start of the next day
    if value is None or parsed is None:
        return datetime.now(UTC)
    return parsed - timedelta(microseconds=1) if len(value.strip()) == 10 else parsed


def _sources(path: Path | None, connection: str | None,
             config: Path | None) -> tuple[Engine, CustomerAttributes]:
    """The ledger engine and the attributes: `--attributes` CSV, `--connection` sync state, or none."""
    if path is not None and connection is not None:
        raise InvalidInput("give --attributes FILE or --connection NAME, not both", field="connection")
    if connection is not None:
        provider = for_connection(connection, config or state.config, database(config, write=False))
        return provider.engine, provider
    return database(config, write=False), StaticAttributes.from_csv(path) if path else NoAttributes()


def _write(text: str, path: Path | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"wrote {path}", highlight=False)


@app.callback(invoke_without_command=True)
def report(
        ctx: typer.Context, as_of: AsOf = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or html.")] = "table",
        out_file: Annotated[Path | None,
                            typer.Option("--out", "-o", help="Write to this file (csv: also "
                                         "FILE.customers.csv).")] = None, attributes: Attributes = None,
        connection: ConnectionOpt = None, config: Config = None,
        window: Annotated[int,
                          typer.Option("--window-days", min=1, help="Days of consumption behind the "
                                       "rate.")] = 90,
        within: Annotated[int,
                          typer.Option("--within", min=0, help="List customers running out within N "
                                       "days.")] = 30,
        top: Annotated[int, typer.Option("--top", min=1, help="Top customers per currency.")] = 10) -> None:
    """Liability, expiry and breakage, runway, punctuality, risk and top customers as of a date."""
    if ctx.invoked_subcommand is not None:
        return
    with handled(fmt == "json"):
        if fmt not in FORMATS:
            raise InvalidInput(f"format: {fmt!r} is not one of {', '.join(FORMATS)}", field="format")
        engine, provider = _sources(attributes, connection, config)
        rep = build_report(engine, parse_as_of(as_of), attributes=provider, rules=load_rules(config or
                                                                                             state.config),
                           window_days=window, within_days=within, top_n=top)
        if fmt == "table":
            print_tables(rep, out)
        elif fmt == "json" and out_file is not None:
            with out_file.open("w", encoding="utf-8") as fh:
                write_json(rep, fh)
            out.print(f"wrote {out_file}", highlight=False)
        elif fmt == "json":
            write_json(rep, sys.stdout)
        elif fmt == "html":
            _write(report_html(rep), out_file)
        else:
            _write(to_csv(summary_rows(rep), SUMMARY_COLUMNS), out_file)
            if out_file is not None:
                _write(to_csv(customer_rows(rep), CUSTOMER_COLUMNS), out_file.with_suffix(".customers.csv"))


@app.command()
def custody(quarter: Annotated[str | None, typer.Option("--quarter", help="e.g. 2026Q1; default the last "
                                                        "quarter ended.")] = None,
            config: Config = None, as_json: Json = False) -> None:
    """Custody required: outstanding prepaid balance at the quarter's end times the configured ratio."""
    with handled(as_json):
        q = quarter or previous_quarter(datetime.now(UTC))
        quarter_bounds(q)
        rules = load_rules(config or state.config)
        lines = custody_report(database(config, write=False), q, rules)
        if as_json:
            emit_json({"quarter": q, "rules": rules.source, "lines": [x.to_dict() for x in lines]})
            return
        t = Table("currency", "accounts", "outstanding at quarter end", "ratio", "custody required",
                  title=f"Custody for {q} (rules: {rules.source})")
        for x in lines:
            t.add_row(x.currency, str(x.accounts), money(x.outstanding, x.currency), str(x.ratio),
                      money(x.required, x.currency))
        out.print(t)


@app.command()
def compliance(start: Annotated[
    str | None,
    typer.Option("--from", help="Deposits from this date (default: "
                 "90 days before --to).")] = None,
               end: Annotated[str | None,
                              typer.Option("--to", help="Through this date (default today).")] = None,
               attributes: Attributes = None, connection: ConnectionOpt = None, config: Config = None,
               as_json: Json = False) -> None:
    """Threshold warnings (real name, cash) for deposits in a period, and the prepayment switch."""
    with handled(as_json):
        rules = load_rules(config or state.config)
        stop = parse_datetime(end, "to", end_of_day=True) or datetime.now(UTC)
        begin = parse_datetime(start, "from") or stop - timedelta(days=90)
        engine, provider = _sources(attributes, connection, config)
        warnings = threshold_warnings(engine, begin, stop, rules, provider)
        if as_json:
            emit_json({
                "rules": rules.source, "accept_prepayments": rules.accept_prepayments,
                "from": begin.isoformat(), "to": stop.isoformat(),
                "warnings": [w.to_dict() for w in warnings]
            })
            return
        status = "accepted" if rules.accept_prepayments else f"STOPPED {rules.stop_reason}".strip()
        out.print(f"Prepayments: {status} (rules: {rules.source})", highlight=False)
        t = Table("date", "customer", "amount", "rule", "what to do",
                  title=f"{len(warnings)} threshold warning(s)")
        for w in warnings:
            t.add_row(w.at.date().isoformat(), w.customer, money(w.amount, w.currency), w.rule, w.message)
        out.print(t)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_name(customer: str, ext: str) -> str:
    """A safe, unique file name for a customer key."""
    slug = _UNSAFE.sub("_", customer)[:120]
    if slug != customer:
        slug += "-" + hashlib.sha1(customer.encode()).hexdigest()[:8]
    return f"{slug}.{ext}"


def statement(customer: Annotated[str | None, typer.Argument(help="Customer key (or use --all).")] = None,
              start: Annotated[str | None,
                               typer.Option("--from", help="First day (in --tz); default: the "
                                            "first entry.")] = None,
              end: Annotated[str | None,
                             typer.Option("--to", help="Last day, inclusive (in --tz); default "
                                          "now.")] = None,
              fmt: Annotated[str, typer.Option("--format", "-f", help="html, csv or json.")] = "html",
              lang: Annotated[str, typer.Option("--lang", help="zh or en.")] = "zh",
              currency: Annotated[str | None,
                                  typer.Option("--currency", "-c", help="Only this currency.")] = None,
              tz: Annotated[str,
                            typer.Option("--tz", help="Time zone for dates and the period (IANA).")] = "UTC",
              out_file: Annotated[Path | None,
                                  typer.Option("--out", "-o", help="Write to this file.")] = None,
              all_: Annotated[bool,
                              typer.Option("--all", help="One file per customer with a balance.")] = False,
              out_dir: Annotated[Path | None,
                                 typer.Option("--out-dir", help="Directory for --all.")] = None,
              attributes: Attributes = None, connection: ConnectionOpt = None, config: Config = None) -> None:
    """A customer statement: opening balance, every entry, closing balance, open lots, refund policy."""
    with handled(fmt == "json"):
        if fmt not in ("html", "csv", "json"):
            raise InvalidInput(f"format: {fmt!r} is not one of html, csv, json", field="format")
        if lang not in ("zh", "en"):
            raise InvalidInput(f"lang: {lang!r} is not one of zh, en", field="lang")
        if all_ == (customer is not None):
            raise InvalidInput("give either CUSTOMER or --all", field="customer")
        if all_ and out_dir is None:
            raise InvalidInput("--all needs --out-dir DIR (one file per customer)", field="out-dir")
        zone_info = zone(tz, "tz", default="UTC")
        now = datetime.now(UTC)
        stop = day_bound(end, tz, "to", next_day=True) or now
        engine, provider = _sources(attributes, connection, config)
        loader = StatementLoader(engine, day_bound(start, tz, "from"), min(stop, now), attributes=provider,
                                 rules=load_rules(config or state.config),
                                 currency=currency.upper() if currency else None)

        def _render(st: object) -> str:
            if fmt == "html":
                return statement_html(st, lang, zone_info, now)  # type: ignore[arg-type]
            if fmt == "csv":
                return statement_csv(st, lang, zone_info)  # type: ignore[arg-type]
            return statement_json(st)  # type: ignore[arg-type]

        if customer is not None:
            _write(_render(loader.one(customer)), out_file)
            return
        assert out_dir is not None
        out_dir.mkdir(parents=True, exist_ok=True)
        count = 0
        for st in loader.with_balance():
            (out_dir / file_name(st.customer, fmt)).write_text(_render(st), encoding="utf-8")
            count += 1
        out.print(f"wrote {count} statement(s) to {out_dir}", highlight=False)
