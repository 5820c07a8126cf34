"""Build the report: read the ledger as of a time, ask the attributes provider, compute every figure."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from connector.compliance.refunds import refund_figures
from connector.compliance.rules import ComplianceRules
from connector.ledger import standing
from connector.ledger.rules import AccountState, LotState
from connector.reports import queries as q
from connector.reports.attributes import CustomerAttributes, CustomerInfo, NoAttributes, standing_inputs
from connector.reports.metrics import BUCKETS, Payment, daily_rate, expected_breakage, risk_score, runway_days
from connector.reports.model import (NONE, NO_USE, RUNWAY_BUCKETS, AccountRow, CurrencySummary, Group,
                                     Punctuality, Report, mean_days)


def month_starts(as_of: datetime, months: int) -> list[str]:
    """The `months` calendar months (YYYY-MM) ending with the month of `as_of`."""
    y, m = as_of.year, as_of.month
    out = []
    for _ in range(months):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def build_report(engine: Engine, as_of: datetime, *, attributes: CustomerAttributes | None = None,
                 rules: ComplianceRules | None = None, window_days: int = 90, trend_days: int = 30,
                 within_days: int = 30, top_n: int = 10, months: int = 12) -> Report:
    """The report as of `as_of` (aware); see docs/reports.md for every formula."""
    rules = rules or ComplianceRules()
    attributes = attributes or NoAttributes()
    month_list = month_starts(as_of, months)
    first_month = datetime.fromisoformat(month_list[0] + "-01").replace(tzinfo=UTC)
    window_start = as_of - timedelta(days=window_days)
    with engine.connect() as conn:
        aggs = list(q.account_aggregates(conn, as_of, as_of - timedelta(days=trend_days), window_start))
        debt = q.debts(conn, as_of)
        reversals = q.consumption_reversals(conn, as_of)
        lots: dict[int, list[tuple[LotState, str]]] = defaultdict(list)
        for ol in q.open_lots(conn, as_of):
            lots[ol.account_id].append((ol.state, ol.kind))
        totals = q.lot_totals(conn, as_of)
        forfeited = q.forfeited_paid(conn, as_of) if rules.forbid_forfeiture else {}
        terms = q.all_terms(conn)
        standing_rules, orphaned = standing_inputs(attributes)
        standings = standing.load(conn, as_of, standing_rules, orphaned=orphaned)
        monthly_raw = q.monthly_consumption(conn, first_month, as_of)

    report = Report(as_of=as_of, window_days=window_days, trend_days=trend_days, within_days=within_days,
                    rules_source=rules.source, top_n=top_n)
    consumed = {a.account_id: a.consumed for a in aggs}
    report.monthly = _net_of_reversals(consumed, month_list, monthly_raw, reversals, window_start,
                                       first_month)
    policy = _refund_policies(terms)

    info = attributes.lookup({a.customer for a in aggs})
    empty = CustomerInfo()
    for a in aggs:
        ci = info.get(a.customer, empty)
        row = AccountRow(customer=a.customer, currency=a.currency, name=ci.name, owner=ci.owner, tier=ci.tier,
                         flags=tuple(ci.flags), balance=a.balance, balance_before=a.balance_before,
                         debt=debt.get(a.account_id, 0))
        acc_lots = lots.get(a.account_id, [])
        spendable = AccountState(a.account_id, a.customer, a.currency, a.balance, row.debt, a.credit_limit,
                                 [lot for lot, _ in acc_lots]).spendable(as_of)
        row.spendable = sum(lot.remaining for lot in spendable) - row.debt
        row.consumed = max(0, consumed.get(a.account_id, 0))
        row.rate = daily_rate(row.consumed, a.first_at, as_of, window_days)
        row.runway = runway_days(row.spendable, row.rate)
        _add_expiry(row, acc_lots, expected_breakage(spendable, row.rate, as_of), as_of)
        pol, pct = policy.get((a.customer, a.currency), ("full", Decimal(0)))
        paid, granted = totals.get(a.account_id, (0, 0))
        refunds = refund_figures(acc_lots, paid=paid, granted=granted, debt=row.debt, policy=pol, fee_pct=pct,
                                 rules=rules, at=as_of, forfeited=forfeited.get(a.account_id, 0))
        row.refund_contract, row.refund_rules, row.refund_policy = refunds.contract, refunds.rules, pol
        row.refund_notes = sorted(set(refunds.notes))
        st = standings.get((a.customer, a.currency))
        if st is not None:  # the one standing the sync flags and the statement show too
            row.payments, row.standing, row.contract_ends = st.payments, st.codes(), st.ends
        risk = risk_score(open_overdue=len(row.overdue), late_payments=len(row.late), runway=row.runway,
                          balance=row.balance, balance_before=row.balance_before, debt=row.debt,
                          flags=row.flags, trend_days=trend_days)
        row.risk, row.risk_band, row.risk_reasons = risk.score, risk.band, risk.reasons
        report.accounts.append(row)
    rows = {(r.customer, r.currency) for r in report.accounts}
    unfunded = []  # accounts with terms and no entries yet: no row, but their due dates count
    for (customer, cur), st in standings.items():
        for code in st.codes():
            report.standing.setdefault(code, set()).add(customer)
        if (customer, cur) not in rows:
            unfunded += st.payments
    _summarize(report, unfunded)
    return report


def _net_of_reversals(consumed: dict[int, int], month_list: list[str],
                      monthly_raw: list[tuple[str, str, int]],
                      reversals: list[tuple[int, str, datetime, int]],
                      window_start: datetime, first_month: datetime) -> dict[str, list[tuple[str, int]]]:
    """Monthly consumption per currency, with reversed consumption taken off it (and off `consumed`,
    per account, when inside the window)."""
    monthly: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(month_list, 0))
    for cur, month, total in monthly_raw:
        monthly[cur][month] += total
    for acc, cur, at, amount in reversals:
        if at > window_start:
            consumed[acc] = consumed.get(acc, 0) - amount
        month = f"{at.year:04d}-{at.month:02d}"
        if at >= first_month and month in monthly[cur]:
            monthly[cur][month] -= amount
    return {cur: list(by.items()) for cur, by in monthly.items()}


def _refund_policies(terms: list[q.TermsRow]) -> dict[tuple[str, str], tuple[str, Decimal]]:
    """(customer, currency) -> (refund policy, fee percent), from customer-wide terms only."""
    policy: dict[tuple[str, str], tuple[str, Decimal]] = {}
    for term in terms:
        if term.contract_ref == "":
            policy[(term.customer, term.currency)] = (term.refund_policy, Decimal(term.refund_fee_pct))
    return policy


def _add_expiry(row: AccountRow, acc_lots: list[tuple[LotState, str]], waste: dict[int, int],
                as_of: datetime) -> None:
    """Expired-but-unswept value, and value (and expected breakage) expiring within each bucket."""
    for lot, _ in acc_lots:
        if lot.expires_at is None:
            continue
        if lot.expires_at <= as_of:
            row.expired_unswept += lot.remaining
            continue
        for days in BUCKETS:
            if lot.expires_at <= as_of + timedelta(days=days):
                row.expiring[days] += lot.remaining
                row.breakage[days] += waste.get(lot.id, 0)


def _summarize(report: Report, unfunded: list[Payment]) -> None:
    report.runway = {label: 0 for label, _ in RUNWAY_BUCKETS} | {NO_USE: 0}
    arrived: list[int] = []
    p = Punctuality()
    for row in report.accounts:
        s = report.currencies.setdefault(row.currency, CurrencySummary(row.currency))
        s.accounts += 1
        held = max(row.balance, 0)
        s.liability += held
        s.receivable += row.debt
        s.refund_contract += row.refund_contract
        s.refund_rules += row.refund_rules
        s.expired_unswept += row.expired_unswept
        s.consumed += row.consumed
        for days in BUCKETS:
            s.expiring[days] += row.expiring[days]
            s.breakage[days] += row.breakage[days]
        for data, name in ((report.by_tier, row.tier), (report.by_owner, row.owner)):
            g = data.setdefault(row.currency, {}).setdefault(name or NONE, Group())
            g.customers += 1
            g.liability += held
        for flag in row.flags:
            g = report.by_flag.setdefault(row.currency, {}).setdefault(flag, Group())
            g.customers += 1
            g.liability += held
        report.runway[row.runway_bucket()] += 1
    for pay in [pay for row in report.accounts for pay in row.payments] + unfunded:
        p.payments += 1
        if pay.status == "on_time":
            p.on_time += 1
        elif pay.status == "late":
            p.late += 1
        elif pay.status == "open_overdue":
            p.open_overdue += 1
        else:
            p.pending += 1
        if pay.arrived is not None and pay.days_late is not None:
            arrived.append(pay.days_late)
    p.avg_days_late = mean_days(arrived)
    p.avg_days_late_of_late = mean_days([d for d in arrived if d > 0])
    p.max_days_late = max(arrived, default=None)
    report.punctuality = p
