"""Build the report: read the ledger as of a time, a block of accounts at a time, ask the attributes provider,
compute every figure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from connector.compliance.refunds import refund_figures
from connector.compliance.rules import ComplianceRules
from connector.ledger import standing
from connector.ledger.rules import AccountState, LotState
from connector.reports import queries as q
from connector.reports.attributes import CustomerAttributes, CustomerInfo, NoAttributes, standing_inputs
from connector.reports.metrics import BUCKETS, Payment, daily_rate, expected_breakage, risk_score, runway_days
from connector.reports.model import (NONE, NO_USE, RUNWAY_BUCKETS, AccountRow, CurrencySummary, Group,
                                     Punctuality, Report, mean_of)


def month_starts(as_of: datetime, months: int) -> list[str]:
    """The `months` calendar months (YYYY-MM) ending with the month of `as_of`."""
    y, m = as_of.year, as_of.month
    out = []
    for _ in range(months):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


BLOCK = 10_000  # accounts (by id) read and computed at a time, so memory does not grow with the ledger
RowSink = Callable[[AccountRow], None]


@dataclass(slots=True)
class _Block:
    """What the report reads of one block of accounts."""

    aggs: list[q.AccountAgg]
    debt: dict[int, int]
    lots: dict[int, list[tuple[LotState, str]]]
    totals: dict[int, tuple[int, int]]
    forfeited: dict[int, int]
    standings: dict[tuple[str, str], standing.Standing]


def build_report(engine: Engine, as_of: datetime, *, attributes: CustomerAttributes | None = None,
                 rules: ComplianceRules | None = None, window_days: int = 90, trend_days: int = 30,
                 within_days: int = 30, top_n: int = 10, months: int = 12, sink: RowSink | None = None,
                 block: int = BLOCK) -> Report:
    """The report as of `as_of` (aware); see docs/reports.md for every formula.

    Accounts are read and computed `block` ids at a time. With `sink`, every account row is handed to it
    (in account order) and `accounts` keeps only the rows the summary lists show (running out, top
    customers), so memory stays flat however many accounts there are; without it `accounts` holds them all.
    """
    rules = rules or ComplianceRules()
    attributes = attributes or NoAttributes()
    month_list = month_starts(as_of, months)
    first_month = datetime.fromisoformat(month_list[0] + "-01").replace(tzinfo=UTC)
    window_start = as_of - timedelta(days=window_days)
    report = Report(as_of=as_of, window_days=window_days, trend_days=trend_days, within_days=within_days,
                    rules_source=rules.source, top_n=top_n)
    standing_rules, orphaned = standing_inputs(attributes)
    with engine.connect() as conn:
        reversals = q.consumption_reversals(conn, as_of)
        report.monthly, taken = _net_of_reversals(month_list, q.monthly_consumption(conn, first_month, as_of),
                                                  reversals, window_start, first_month)
        policy = _refund_policies(q.all_terms(conn))
        first, last = conn.execute(select(func.min(q.A.c.id), func.max(q.A.c.id))).one()
        latest = q.latest_effective(conn)
    summary = _Summary(report)
    kept = _Kept(report)

    def read(lo: int) -> _Block:
        with engine.connect() as conn:
            return _read(conn, (lo, lo + block), as_of, trend_days, window_start, latest, rules,
                         standing_rules, orphaned)

    starts = list(range(first or 0, (last or -1) + 1, block))
    # The next block is read (the database working, the driver waiting without the GIL) while this one is
    # computed; not where the engine has one connection for everyone (an in-memory SQLite database).
    ahead = len(starts) > 1 and not isinstance(engine.pool, (StaticPool, SingletonThreadPool))
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, starts[0]) if ahead else None
        for i, lo in enumerate(starts):
            data = pending.result() if pending is not None else read(lo)
            pending = reader.submit(read, starts[i + 1]) if ahead and i + 1 < len(starts) else None
            _compute(report, data, attributes, summary, kept, sink, as_of, window_days, trend_days, rules,
                     policy, taken)
    summary.finish()
    if sink is not None:
        report.accounts = kept.rows()
    return report


def _compute(report: Report, data: _Block, attributes: CustomerAttributes, summary: _Summary, kept: _Kept,
             sink: RowSink | None, as_of: datetime, window_days: int, trend_days: int, rules: ComplianceRules,
             policy: dict[tuple[str, str], tuple[str, Decimal]], taken: dict[int, int]) -> None:
    """The rows and standing of one block, handed to the summary and the sink (or kept)."""
    info = attributes.lookup({a.customer for a in data.aggs})
    for a in data.aggs:
        row = _row(a, data, info.get(a.customer, _EMPTY), as_of, window_days, trend_days, rules, policy,
                   a.consumed - taken.get(a.account_id, 0))
        summary.add(row)
        if sink is None:
            report.accounts.append(row)
        else:
            sink(row)
            kept.offer(row)
    rows = {(a.customer, a.currency) for a in data.aggs}
    for (customer, cur), st in data.standings.items():
        for code in st.codes():
            report.standing.setdefault(code, set()).add(customer)
        if (customer, cur) not in rows:  # terms and no entries yet: no row, but their due dates count
            summary.payments(st.payments)


_EMPTY = CustomerInfo()


def _read(conn: Connection, ids: q.IdRange, as_of: datetime, trend_days: int, window_start: datetime,
          latest: datetime | None, rules: ComplianceRules, standing_rules: standing.StandingRules,
          orphaned: set[str]) -> _Block:
    """One block of accounts (lo <= id < hi) as of `as_of`."""
    lots: dict[int, list[tuple[LotState, str]]] = defaultdict(list)
    for ol in q.open_lots(conn, as_of, latest=latest, ids=ids):
        lots[ol.account_id].append((ol.state, ol.kind))
    return _Block(
        aggs=list(q.account_aggregates(conn, as_of, as_of - timedelta(days=trend_days), window_start, ids)),
        debt=q.debts(conn, as_of, ids=ids), lots=lots, totals=q.lot_totals(conn, as_of, ids=ids),
        forfeited=q.forfeited_paid(conn, as_of, ids) if rules.forbid_forfeiture else {},
        standings=standing.load(conn, as_of, standing_rules, orphaned=orphaned, account_ids=ids))


def _row(a: q.AccountAgg, data: _Block, ci: CustomerInfo, as_of: datetime, window_days: int,
         trend_days: int, rules: ComplianceRules, policy: dict[tuple[str, str], tuple[str, Decimal]],
         consumed: int) -> AccountRow:
    """Every figure of one account."""
    row = AccountRow(customer=a.customer, currency=a.currency, name=ci.name, owner=ci.owner, tier=ci.tier,
                     flags=tuple(ci.flags), balance=a.balance, balance_before=a.balance_before,
                     debt=data.debt.get(a.account_id, 0))
    acc_lots = data.lots.get(a.account_id, [])
    spendable = AccountState(a.account_id, a.customer, a.currency, a.balance, row.debt, a.credit_limit,
                             [lot for lot, _ in acc_lots]).spendable(as_of)
    row.spendable = sum(lot.remaining for lot in spendable) - row.debt
    row.consumed = max(0, consumed)
    row.rate = daily_rate(row.consumed, a.first_at, as_of, window_days)
    row.runway = runway_days(row.spendable, row.rate)
    _add_expiry(row, acc_lots, expected_breakage(spendable, row.rate, as_of), as_of)
    pol, pct = policy.get((a.customer, a.currency), ("full", Decimal(0)))
    paid, granted = data.totals.get(a.account_id, (0, 0))
    refunds = refund_figures(acc_lots, paid=paid, granted=granted, debt=row.debt, policy=pol, fee_pct=pct,
                             rules=rules, at=as_of, forfeited=data.forfeited.get(a.account_id, 0))
    row.refund_contract, row.refund_rules, row.refund_policy = refunds.contract, refunds.rules, pol
    row.refund_notes = sorted(set(refunds.notes))
    st = data.standings.get((a.customer, a.currency))
    if st is not None:  # the one standing the sync flags and the statement show too
        row.payments, row.standing, row.contract_ends = st.payments, st.codes(), st.ends
    risk = risk_score(open_overdue=len(row.overdue), late_payments=len(row.late), runway=row.runway,
                      balance=row.balance, balance_before=row.balance_before, debt=row.debt,
                      flags=row.flags, trend_days=trend_days)
    row.risk, row.risk_band, row.risk_reasons = risk.score, risk.band, risk.reasons
    return row


def _net_of_reversals(month_list: list[str], monthly_raw: list[tuple[str, str, int]],
                      reversals: list[tuple[int, str, datetime, int]], window_start: datetime,
                      first_month: datetime) -> tuple[dict[str, list[tuple[str, int]]], dict[int, int]]:
    """Monthly consumption per currency with reversed consumption taken off it, and per account the
    reversed consumption inside the window (to take off its `consumed`)."""
    monthly: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(month_list, 0))
    taken: dict[int, int] = {}
    for cur, month, total in monthly_raw:
        monthly[cur][month] += total
    for acc, cur, at, amount in reversals:
        if at > window_start:
            taken[acc] = taken.get(acc, 0) + amount
        month = f"{at.year:04d}-{at.month:02d}"
        if at >= first_month and month in monthly[cur]:
            monthly[cur][month] -= amount
    return {cur: list(by.items()) for cur, by in monthly.items()}, taken


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


class _Summary:
    """Per-currency totals, groups, runway distribution and punctuality, added up one row at a time."""

    def __init__(self, report: Report) -> None:
        self.report = report
        report.runway = {label: 0 for label, _ in RUNWAY_BUCKETS} | {NO_USE: 0}
        self.p = report.punctuality = Punctuality()
        # days late summed and counted over arrived payments, then over late ones only
        self.late_days = [0, 0, 0, 0]
        self.worst: int | None = None

    def add(self, row: AccountRow) -> None:
        """Count one account row."""
        report = self.report
        s = report.currencies.get(row.currency)
        if s is None:
            s = report.currencies[row.currency] = CurrencySummary(row.currency)
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
        if row.payments:
            self.payments(row.payments)

    def payments(self, payments: list[Payment]) -> None:
        """Count due dates (of a row, or of an account with terms and no entries)."""
        p, days = self.p, self.late_days
        for pay in payments:
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
                days[0] += pay.days_late
                days[1] += 1
                if pay.days_late > 0:
                    days[2] += pay.days_late
                    days[3] += 1
                self.worst = pay.days_late if self.worst is None else max(self.worst, pay.days_late)

    def finish(self) -> None:
        """The punctuality means and worst case."""
        total, n, late_total, late_n = self.late_days
        self.p.avg_days_late = mean_of(total, n)
        self.p.avg_days_late_of_late = mean_of(late_total, late_n)
        self.p.max_days_late = self.worst


class _Kept:
    """With a sink, the rows the summary lists still need: every row running out, and per currency
    the `top_n` largest positive balances (trimmed as rows arrive)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.running: list[AccountRow] = []
        self.top: dict[str, list[AccountRow]] = defaultdict(list)

    def offer(self, row: AccountRow) -> None:
        """Keep `row` if a list may show it."""
        if row.runway is not None and row.runway <= self.report.within_days:
            self.running.append(row)
        elif row.balance > 0:
            top = self.top[row.currency]
            top.append(row)
            if len(top) >= 4 * self.report.top_n + 64:
                top.sort(key=_by_balance)
                del top[self.report.top_n:]

    def rows(self) -> list[AccountRow]:
        """The kept rows (each once)."""
        tops = [row for top in self.top.values() for row in sorted(top, key=_by_balance)[: self.report.top_n]]
        return self.running + tops


def _by_balance(row: AccountRow) -> tuple[int, str]:
    return -row.balance, row.customer
