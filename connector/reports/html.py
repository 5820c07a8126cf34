"""The report as one self-contained offline HTML file: inline CSS and SVG charts, no scripts, no links out."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from connector.reports.display import human_day, human_time, money, who
from connector.reports.metrics import BUCKETS
from connector.reports.model import Report
from connector.reports.svg import bar_chart

UTC_ZONE = ZoneInfo("UTC")
STANDING_LABELS = {
    "overdue": "Customers overdue", "expiring_soon": "Contracts expiring soon",
    "expired": "Contracts ended, money left", "orphaned": "Money without a customer (orphaned)"
}

CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans", "Helvetica Neue", Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #1a1a1a; font-size: 14px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 2px solid #1f4e79; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #c9d3de; border-radius: 6px; padding: 10px 14px; min-width: 180px; }
.card span { display: block; color: #555; font-size: 12px; } .card b { font-size: 20px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; overflow-wrap: anywhere; }
th { background: #eef3f8; } td.num { text-align: right; white-space: nowrap; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
figure.chart { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
.high { color: #a40000; font-weight: 600; } .medium { color: #9a6700; }
@page { size: A4; margin: 12mm; }
@media print { .charts { grid-template-columns: 1fr; } body { margin: 0; } }
@media (max-width: 800px) { body { margin: 12px; font-size: 12.5px; } th, td { padding: 3px 5px; } }
"""


def _table(headers: list[str], rows: list[list[str]], num_from: int = 99, table_id: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" +
                   "".join(f'<td class="num">{escape(c)}</td>' if i >= num_from else f"<td>{escape(c)}</td>"
                           for i, c in enumerate(row)) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(report: Report) -> list[str]:
    """The headline cards: per-currency totals, then counts across currencies."""
    cards = []
    for cur, s in sorted(report.currencies.items()):
        for key, label, value in (("liability", "Prepaid liability", s.liability),
                                  ("refund-rules", "Refunds owed (rules in force)", s.refund_rules),
                                  ("expiring-30", "Expiring within 30 days", s.expiring[30]),
                                  ("breakage-90", "Expected breakage, 90 days", s.breakage[90])):
            cards.append(f'<div class="card"><span>{label} ({cur})</span><b id="{key}-{cur}">'
                         f"{escape(money(value, cur))}</b></div>")
    p = report.punctuality
    cards.append(f'<div class="card"><span>Running out within {report.within_days} days</span>'
                 f'<b id="running-out">{len(report.running_out())}</b></div>')
    cards.append(
        f'<div class="card"><span>Payments overdue and open</span><b id="overdue">{p.open_overdue}</b></div>')
    for code, label in STANDING_LABELS.items():
        cards.append(f'<div class="card"><span>{label}</span><b id="standing-{code}">'
                     f"{report.standing_counts()[code]}</b></div>")
    return cards


def _charts(report: Report) -> list[str]:
    """Monthly consumption and expiry charts per currency, then the runway distribution."""
    charts = []
    for cur, months in sorted(report.monthly.items()):
        charts.append(bar_chart(f"Consumption per month ({cur})", [m[2:] for m, _ in months],
                                [v for _, v in months], [money(v, cur) if v else "" for _, v in months],
                                chart_id=f"chart-monthly-{cur}"))
        s = report.currencies[cur]
        charts.append(bar_chart(f"Expiring and expected breakage ({cur})",
                                [f"{d}d" for d in BUCKETS] + [f"breakage {d}d" for d in BUCKETS],
                                [s.expiring[d] for d in BUCKETS] + [s.breakage[d] for d in BUCKETS],
                                [money(s.expiring[d], cur) for d in BUCKETS] + [money(s.breakage[d], cur)
                                                                               for d in BUCKETS],
                                chart_id=f"chart-expiry-{cur}", color="#9a6700"))
    charts.append(
        bar_chart("Runway distribution (accounts)", list(report.runway), list(report.runway.values()),
                  [str(v) for v in report.runway.values()], chart_id="chart-runway", color="#2e7d32"))
    return charts


def to_html(report: Report, *, limit: int = 50) -> str:
    """Render the report."""
    cards, charts = _cards(report), _charts(report)
    p = report.punctuality
    liab = _table(["Currency", "Accounts", "Liability", "Refunds owed (contract)", "Refunds owed (rules)",
                   "Receivable"],
                  [[cur, str(s.accounts), money(s.liability, cur), money(s.refund_contract, cur),
                    money(s.refund_rules, cur), money(s.receivable, cur)]
                   for cur, s in sorted(report.currencies.items())], 1, "liability")
    expiry = _table(
        ["Currency", "Expiring 30d", "60d", "90d", "Breakage 30d", "60d", "90d", "Expired, unswept"], [[
            cur, *(money(s.expiring[d], cur) for d in BUCKETS), *(money(s.breakage[d], cur) for d in BUCKETS),
            money(s.expired_unswept, cur)
        ] for cur, s in sorted(report.currencies.items())], 1, "expiry")
    groups = _groups(report)
    running = _table(["Customer", "Currency", "Runway (days)", "Balance"],
                     [[who(r.name, r.customer), r.currency, str(r.runway), money(r.balance, r.currency)]
                      for r in report.running_out()[:limit]], 2, "running-out-table")
    late = _table(["Customer", "Currency", "Overdue", "Late", "Mean days late"], [[
        who(r.name, r.customer), r.currency,
        str(len(r.overdue)),
        str(len(r.late)),
        str(r.avg_days_late() or "-")
    ] for r in report.late_payers()[:limit]], 2, "late-payers")
    risk = _table(["Customer", "Currency", "Score", "Band", "Why"],
                  [[who(r.name, r.customer), r.currency, str(r.risk), r.risk_band, "; ".join(r.risk_reasons)]
                   for r in report.riskiest(limit)], 2, "risk")
    tops = "".join(f"<h3>{cur}</h3>" + _table(["Customer", "Balance"],
                                              [[who(r.name, r.customer), money(r.balance, cur)]
                                               for r in report.top(cur)], 1, f"top-{cur}")
                   for cur in sorted(report.currencies))
    punct = (
        f'<p id="punctuality">{p.payments} payments: {p.on_time} on time, {p.late} late, {p.open_overdue} '
        f"overdue and open, {p.pending} not yet due. Mean days from due date to money: "
        f"{p.avg_days_late if p.avg_days_late is not None else '-'}; worst "
        f"{p.max_days_late if p.max_days_late is not None else '-'}.</p>")
    basis = _refund_basis(report)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Prepaid report {human_day(report.as_of)}</title>
<style>{CSS}</style></head><body>
<h1>Prepaid customers: report as of {escape(human_time(report.as_of, UTC_ZONE))} UTC</h1>
<p>Rates over the last {report.window_days} days; balance trend over {report.trend_days} days;
compliance rules: {escape(report.rules_source)}.</p>
<div class="cards">{"".join(cards)}</div>
<h2>Liability by currency</h2>{liab}{basis}
<h2>Expiry and expected breakage</h2>{expiry}
<h2>Charts</h2><div class="charts">{"".join(charts)}</div>
{"".join(groups)}
<h2>Running out within {report.within_days} days</h2>{running}
<h2>Payment punctuality</h2>{punct}{late}
<h2>Highest risk</h2>{risk}
<h2>Top customers by balance</h2>{tops}
</body></html>
"""


def _groups(report: Report) -> list[str]:
    """Liability by tier, owner and flag (a section only when it has rows)."""
    groups = []
    for title, data in (("By tier", report.by_tier), ("By owner", report.by_owner), ("By flag",
                                                                                     report.by_flag)):
        rows = [[cur, name, str(g.customers), money(g.liability, cur)]
                for cur, by in sorted(data.items()) for name, g in sorted(by.items())]
        if rows:
            groups.append(f"<h2>{title}</h2>" +
                          _table(["Currency", "Group", "Customers", "Liability"], rows, 2))
    return groups


def _refund_basis(report: Report) -> str:
    """What the two refund figures mean, and which accounts the rules override."""
    overridden = [r for r in report.accounts if r.refund_notes]
    return (
        f'<p id="refund-basis">Refunds owed (contract): what each contract\'s refund policy allows. '
        "Refunds owed "
        f"(rules): under the compliance rules in force ({escape(report.rules_source)}); they override the "
        f"contract for {len(overridden)} account(s)" +
        (": " + escape("; ".join(sorted({n
                                         for r in overridden
                                         for n in r.refund_notes}))) if overridden else "") + ".</p>")
