"""Report output: rich tables for the terminal, CSV for spreadsheets, JSON for BI."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.table import Table

from connector.money import fmt
from connector.reports.display import money, who
from connector.reports.metrics import BUCKETS
from connector.reports.model import AccountRow, Report, fmt_rate

CUSTOMER_COLUMNS = ("customer", "currency", "name", "owner", "tier", "flags", "balance", "debt", "spendable",
                    "daily_rate", "runway_days", "expiring_30d", "expiring_60d", "expiring_90d",
                    "breakage_90d", "expired_unswept", "avg_days_late", "late_payments", "overdue_payments",
                    "refund_policy", "refund_contract", "refund_rules", "refund_basis", "risk_score",
                    "risk_band", "risk_reasons", "standing")


def write_json(report: Report, out: TextIO) -> None:
    """The whole report as one JSON document, streamed: summaries, then one line per customer row."""
    head = json.dumps(report.to_dict(customers=False), ensure_ascii=False, indent=2)
    out.write(head[:-2] + ',\n  "customers": [')
    for i, row in enumerate(report.accounts):
        out.write(("\n    " if i == 0 else ",\n    ") + json.dumps(row.to_dict(), ensure_ascii=False))
    out.write("\n  ]\n}\n")


def stream_json(build: Callable[[Callable[[AccountRow], None]], Report], out: TextIO | Path) -> None:
    """The same document as `write_json`, for a report built with a row sink (`build(sink)`, e.g. a
    `build_report` call): customer lines go to a temporary file as they are computed, and follow the
    summaries, so no more than a block of rows is held in memory. A file `out` is opened once the report
    is built."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        sep = ["\n    "]

        def sink(row: AccountRow) -> None:
            spool.write(sep[0] + json.dumps(row.to_dict(), ensure_ascii=False))
            sep[0] = ",\n    "

        report = build(sink)
        head = json.dumps(report.to_dict(customers=False), ensure_ascii=False, indent=2)
        spool.seek(0)
        with nullcontext(out) if not isinstance(out, Path) else out.open("w", encoding="utf-8") as fh:
            fh.write(head[:-2] + ',\n  "customers": [')
            shutil.copyfileobj(spool, fh)
            fh.write("\n  ]\n}\n")


def to_json(report: Report) -> str:
    """The whole report, per-customer rows included, as a string."""
    buf = io.StringIO()
    write_json(report, buf)
    return buf.getvalue()


def summary_rows(report: Report) -> Iterator[list[str]]:
    """Tidy (section, currency, group, metric, value) rows of every summary figure."""
    for cur, s in sorted(report.currencies.items()):
        for metric, value in s.to_dict().items():
            if isinstance(value, dict):
                for k, v in value.items():
                    yield ["currency", cur, "", f"{metric}_{k}", v]
            elif metric != "currency":
                yield ["currency", cur, "", metric, str(value)]
    for cur, rows in sorted(report.monthly.items()):
        for month, v in rows:
            yield ["monthly_consumption", cur, month, "consumed", fmt(v, cur)]
    for section, data in (("tier", report.by_tier), ("owner", report.by_owner), ("flag", report.by_flag)):
        for cur, groups in sorted(data.items()):
            for name, g in sorted(groups.items()):
                yield [section, cur, name, "customers", str(g.customers)]
                yield [section, cur, name, "liability", fmt(g.liability, cur)]
    for label, n in report.runway.items():
        yield ["runway", "", label, "accounts", str(n)]
    for metric, value in report.punctuality.to_dict().items():
        yield ["punctuality", "", "", metric, "" if value is None else str(value)]


def customer_rows(report: Report) -> Iterator[list[str]]:
    """One row per account, in CUSTOMER_COLUMNS order."""
    for r in report.accounts:
        c = r.currency
        avg = r.avg_days_late()
        yield [
            r.customer, c, r.name or "", r.owner or "", r.tier or "", ";".join(r.flags),
            fmt(r.balance, c),
            fmt(r.debt, c),
            fmt(r.spendable, c),
            fmt_rate(r.rate.per_day, c), "" if r.runway is None else str(r.runway),
            *(fmt(r.expiring[d], c) for d in BUCKETS),
            fmt(r.breakage[90], c),
            fmt(r.expired_unswept, c), "" if avg is None else str(avg),
            str(len(r.late)),
            str(len(r.overdue)), r.refund_policy,
            fmt(r.refund_contract, c),
            fmt(r.refund_rules, c), "; ".join(r.refund_notes) or "contract",
            str(r.risk), r.risk_band, "; ".join(r.risk_reasons), ";".join(r.standing)
        ]


def to_csv(rows: Iterator[list[str]], header: tuple[str, ...]) -> str:
    """CSV text with a header row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


SUMMARY_COLUMNS = ("section", "currency", "group", "metric", "value")


def print_tables(report: Report, console: Console, *, limit: int = 20) -> None:
    """Terminal view: summaries and the top of each list."""
    console.print(f"[bold]Prepaid report as of {report.as_of.isoformat()}[/] (rules: {report.rules_source})",
                  highlight=False)
    t = Table("currency", "accounts", "liability", "refunds owed: contract", "refunds owed: rules",
              "receivable", title="Liability")
    for cur, s in sorted(report.currencies.items()):
        t.add_row(cur, str(s.accounts), money(s.liability, cur), money(s.refund_contract, cur),
                  money(s.refund_rules, cur), money(s.receivable, cur))
    console.print(t)
    t = Table("currency", *(f"expiring {d}d" for d in BUCKETS), *(f"breakage {d}d" for d in BUCKETS),
              "expired, unswept", title="Expiry and expected breakage")
    for cur, s in sorted(report.currencies.items()):
        t.add_row(cur, *(money(s.expiring[d], cur) for d in BUCKETS),
                  *(money(s.breakage[d], cur) for d in BUCKETS), money(s.expired_unswept, cur))
    console.print(t)
    for title, data in (("By tier", report.by_tier), ("By owner", report.by_owner), ("By flag",
                                                                                     report.by_flag)):
        if not data:
            continue
        t = Table("currency", "group", "customers", "liability", title=title)
        for cur, groups in sorted(data.items()):
            for name, g in sorted(groups.items()):
                t.add_row(cur, name, str(g.customers), money(g.liability, cur))
        console.print(t)
    t = Table(*report.runway.keys(), title=f"Runway (days, at the last {report.window_days} days' rate)")
    t.add_row(*(str(v) for v in report.runway.values()))
    console.print(t)
    t = Table("customer", "currency", "runway", "balance",
              title=f"Running out within {report.within_days} days")
    for r in report.running_out()[:limit]:
        t.add_row(who(r.name, r.customer), r.currency, str(r.runway), money(r.balance, r.currency))
    console.print(t)
    p = report.punctuality
    console.print(
        f"Payments: {p.payments} ({p.on_time} on time, {p.late} late, {p.open_overdue} overdue and open, "
        f"{p.pending} not yet due); mean days from due date to money: {p.avg_days_late or '-'}, "
        f"worst {p.max_days_late if p.max_days_late is not None else '-'}", highlight=False)
    counts = report.standing_counts()
    console.print(
        f"Standing (as the sync flags it): {counts['overdue']} customers overdue, {counts['expiring_soon']} "
        f"contracts expiring soon, {counts['expired']} ended with money left, {counts['orphaned']} orphaned "
        "(money without a customer)", highlight=False)
    t = Table("customer", "currency", "overdue", "late", "mean days late", title="Late payers")
    for r in report.late_payers()[:limit]:
        t.add_row(who(r.name, r.customer), r.currency, str(len(r.overdue)), str(len(r.late)),
                  str(r.avg_days_late() or "-"))
    console.print(t)
    t = Table("month", *sorted(report.monthly), title="Consumption per month")
    months = [m for m, _ in next(iter(report.monthly.values()), [])]
    for i, month in enumerate(months):
        t.add_row(month, *(money(report.monthly[c][i][1], c) for c in sorted(report.monthly)))
    console.print(t)
    t = Table("customer", "currency", "score", "band", "why", title="Highest risk")
    for r in report.riskiest(limit):
        t.add_row(who(r.name, r.customer), r.currency, str(r.risk), r.risk_band, "; ".join(r.risk_reasons))
    console.print(t)
    for cur in sorted(report.currencies):
        t = Table("customer", "balance", title=f"Top customers by balance ({cur})")
        for r in report.top(cur):
            t.add_row(who(r.name, r.customer), money(r.balance, cur))
        console.print(t)
