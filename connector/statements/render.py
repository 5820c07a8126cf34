"""Statement output: printable HTML (A4), CSV and JSON, in Chinese or English."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from connector.money import fmt
from connector.reports.display import day, human_day, human_time, money
from connector.statements.builder import TICK, CustomerStatement, Section
from connector.statements.labels import labels

CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", "Helvetica Neue",
       Arial, sans-serif; color: #1a1a1a; font-size: 10.5pt; margin: 0 auto; max-width: 186mm; \
padding: 8mm 0; }
h1 { font-size: 17pt; margin: 0 0 2mm; }
h2 { font-size: 12.5pt; margin: 7mm 0 2mm; border-bottom: 1.5pt solid #1f4e79; padding-bottom: 1mm; }
h3 { font-size: 10.5pt; margin: 4mm 0 1.5mm; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.6mm 5mm; margin-bottom: 3mm; }
.meta dt { color: #555; } .meta dd { margin: 0; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; table-layout: fixed; }
td, th { overflow-wrap: anywhere; word-break: normal; }
td.label { white-space: nowrap; }
col.date { width: 17%; } col.type { width: 11%; } col.ref { width: 25%; } col.memo { width: 19%; }
col.amount, col.balance { width: 14%; }
.basis { font-size: 9pt; color: #333; }
thead { display: table-header-group; }
th, td { padding: 1.2mm 1.5mm; border-bottom: 0.4pt solid #ccc; text-align: left; vertical-align: top; }
th { background: #eef3f8; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr { page-break-inside: avoid; break-inside: avoid; }
tr.sum td { font-weight: 700; border-top: 1pt solid #333; }
.neg { color: #a40000; }
.summary { display: flex; gap: 6mm; margin: 2mm 0; }
.summary div { border: 0.6pt solid #bbb; padding: 2mm 4mm; border-radius: 1.5mm; }
.summary b { display: block; font-size: 12.5pt; }
.note { color: #555; font-size: 8.5pt; margin-top: 6mm; }
section.currency { break-before: auto; }
section.currency + section.currency { break-before: page; }
@media print { body { padding: 0; max-width: none; } .summary div { border-color: #888; } }
"""


def _amount(minor: int, cur: str) -> str:
    cls = "num neg" if minor < 0 else "num"
    return f'<td class="{cls}">{escape(money(minor, cur))}</td>'


def _policy(sec: Section, t: dict[str, str]) -> str:
    text = t[f"policy_{sec.policy}"]
    return text.format(pct=sec.fee_pct) if "{pct}" in text else text


def _standing(sec: Section, t: dict[str, str], tz: ZoneInfo, lang: str) -> str:
    ends = human_day(sec.contract_ends, None, lang)
    return "; ".join(t[code].format(ends=ends) for code in sec.standing) or t["standing_none"]


def _basis(sec: Section, t: dict[str, str]) -> str:
    if sec.rules_policy == sec.policy and not sec.refund_notes:
        return t["basis_contract"]
    return t["basis_rules"] + ": " + "; ".join(sec.refund_notes)


def _section_html(sec: Section, t: dict[str, str], tz: ZoneInfo, lang: str = "en") -> str:
    c = sec.currency
    rows = [f'<tr class="opening"><td></td><td class="label" colspan="3">{t["opening"]}</td><td></td>'
            f'{_amount(sec.opening, c)}</tr>']
    for x in sec.lines:
        rows.append(f'<tr><td>{human_day(x.at, tz, lang)}</td><td>{escape(t.get(x.kind, x.kind))}</td>'
                    f'<td>{escape(x.reference)}</td><td>{escape(x.memo)}</td>{_amount(x.amount, c)}'
                    f'{_amount(x.running, c)}</tr>')
    if not sec.lines:
        rows.append(f'<tr><td colspan="6">{t["no_entries"]}</td></tr>')
    rows.append(f'<tr class="sum"><td></td><td class="label" colspan="3">{t["closing"]}</td><td></td>'
                f'{_amount(sec.closing, c)}</tr>')
    totals = "".join(f'<tr><td>{escape(t.get(k, k))}</td>{_amount(v, c)}</tr>'
                     for k, v in sorted(sec.totals().items()))
    lots = "".join(
        f'<tr><td>{x.lot_id}</td><td>{human_day(x.received, tz, lang)}</td>'
        f'<td>{human_day(x.expires, tz, lang) or t["never"]}</td>'
        f'{_amount(x.amount, c)}{_amount(x.remaining, c)}'
        f'<td>{t["yes"] if x.refundable else t["no"]}</td></tr>'
        for x in sec.lots)
    return f"""
<section class="currency" data-currency="{c}">
<h2>{t["currency"]}: {c}</h2>
<div class="summary">
  <div>{t["opening"]}<b id="opening-{c}">{escape(money(sec.opening, c))}</b></div>
  <div>{t["closing"]}<b id="closing-{c}">{escape(money(sec.closing, c))}</b></div>
  <div>{t["refundable_now"]}<b id="refundable-{c}">{escape(money(sec.refundable, c))}</b></div>
</div>
<p class="basis"><b>{t["refund_basis"]}:</b> <span id="basis-{c}">{escape(_basis(sec, t))}</span></p>
<p class="basis"><b>{t["standing"]}:</b> <span id="standing-{c}">\
{escape(_standing(sec, t, tz, lang))}</span></p>
<table class="entries"><colgroup><col class="date"><col class="type"><col class="ref"><col class="memo">
<col class="amount"><col class="balance"></colgroup>
<thead><tr><th>{t["date"]}</th><th>{t["type"]}</th><th>{t["reference"]}</th>
<th>{t["description"]}</th><th class="num">{t["amount"]}</th><th class="num">{t["balance"]}</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h3>{t["totals"]}</h3>
<table class="totals"><tbody>{totals}</tbody></table>
<h3>{t["lots"]}</h3>
<table class="lots"><thead><tr><th>{t["lot"]}</th><th>{t["received"]}</th><th>{t["expires"]}</th>
<th class="num">{t["original"]}</th><th class="num">{t["remaining"]}</th>\
<th>{t["refundable"]}</th></tr></thead>
<tbody>{lots}</tbody></table>
<p><b>{t["policy"]}:</b> <span class="policy">{escape(_policy(sec, t))}</span></p>
</section>"""


def to_html(st: CustomerStatement, lang: str, tz: ZoneInfo, generated: datetime) -> str:
    """A self-contained printable HTML statement."""
    t = labels(lang)
    period_from = human_day(st.start, tz, lang) if st.start else t["from_start"]
    period_to = human_day(st.end - TICK, tz, lang)
    who = escape(st.name or st.customer)
    return f"""<!DOCTYPE html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<title>{t["title"]} - {who}</title><style>{CSS}</style></head>
<body>
<h1>{t["title"]}</h1>
<dl class="meta">
<dt>{t["customer"]}</dt><dd id="customer-name">{who}</dd>
<dt>{t["account"]}</dt><dd>{escape(st.customer)}</dd>
<dt>{t["period"]}</dt><dd id="period">{period_from} {t["to"]} {period_to}</dd>
<dt>{t["generated"]}</dt><dd>{human_time(generated, tz, lang)} ({t["tz"]} {tz.key})</dd>
</dl>
{"".join(_section_html(sec, t, tz, lang) for sec in st.sections)}
<p class="note">{t["page_note"]}</p>
</body></html>
"""


def to_csv(st: CustomerStatement, lang: str, tz: ZoneInfo) -> str:
    """One row per entry with opening and closing rows; amounts as plain decimals."""
    t = labels(lang)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([
        t["account"], t["currency"], t["date"], t["type"], t["reference"], t["description"], t["amount"],
        t["balance"]
    ])
    for sec in st.sections:
        c = sec.currency
        w.writerow([st.customer, c, day(st.start, tz), t["opening"], "", "", "", fmt(sec.opening, c)])
        for x in sec.lines:
            w.writerow([
                st.customer, c,
                day(x.at, tz),
                t.get(x.kind, x.kind), x.reference, x.memo,
                fmt(x.amount, c),
                fmt(x.running, c)
            ])
        w.writerow([st.customer, c, day(st.end - TICK, tz), t["closing"], "", "", "", fmt(sec.closing, c)])
    return buf.getvalue()


def to_json(st: CustomerStatement) -> str:
    """The statement as one JSON document."""
    return json.dumps(st.to_dict(), ensure_ascii=False, indent=2) + "\n"
