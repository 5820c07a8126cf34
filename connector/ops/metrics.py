"""Figures read from the database when Prometheus scrapes: runs, budgets, open flags, ledger liability.

`DatabaseCollector` is a prometheus_client custom collector. It holds no counts of its own: every
scrape reads them with a few grouped queries, so any process on the database (a `serve`, a second
`serve` on the same PostgreSQL, a `schedule` worker's host) answers the same figures. Labels are
connection names, run statuses, flag codes and currency codes, all bounded; no customer key, CRM id,
API key or secret is ever a label or a value.

Money in the exposition format is a float64 in the currency's major unit (Prometheus has no other
number); the ledger itself stays in integer minor units and these figures are for monitoring only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.exc import SQLAlchemyError

from connector.config import LoadedSettings
from connector.ledger.store import accounts
from connector.money import exponent
from connector.sync import tables as t
from connector.sync.budget import ApiBudget
from connector.timeutil import utcnow, zone

log = logging.getLogger(__name__)
NS = "prepaid_sync"
#: run statuses that count as a successful run: it finished; records that failed are counted apart
SUCCESS = ("ok", "partial")


@dataclass(frozen=True)
class BudgetSpec:
    """A configured connection's daily API budget (its meter knows the limit, the unit and the day)."""

    meter: ApiBudget

    @property
    def limit(self) -> int | None:
        """Units a day (None: no budget set)."""
        return self.meter.limit

    @property
    def unit(self) -> str:
        """'calls' or 'credits'."""
        return self.meter.unit


@dataclass
class Facts:
    """What one scrape read."""

    runs: list[tuple[str, str, int]] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    last_success: dict[str, datetime] = field(default_factory=dict)
    last_duration: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[str, int, int]] = field(default_factory=list)
    today: dict[str, tuple[int, int]] = field(default_factory=dict)
    flags: list[tuple[str, str, int]] = field(default_factory=list)
    ledger: list[tuple[str, int, int, int]] = field(default_factory=list)


def budgets_of(engine: Engine, loaded: LoadedSettings) -> dict[str, BudgetSpec]:
    """The budget of every connection of a loaded config, by name."""
    settings = loaded.settings
    return {name: BudgetSpec(ApiBudget(engine, name, limit=conn.daily_api_budget, unit=conn.unit(),
                                       tz=zone(settings.zone(conn))))
            for name, conn in settings.connections.items()}


def read_facts(conn: DbConnection, budgets: dict[str, BudgetSpec], now: datetime) -> Facts:
    """Every DB-derived figure, in one connection (one or two grouped queries per figure)."""
    r = t.runs.c
    facts = Facts()
    done = t.runs.c.dry_run.is_(False)
    counts: dict[tuple[str, str], int] = {(c, s): int(n) for c, s, n in conn.execute(
        select(r.connection, r.status, func.count()).where(done, r.status != "running")
        .group_by(r.connection, r.status))}
    # A 'running' row whose lock is gone ended with its process: counted as crashed, as `status` shows it.
    for c, n in conn.execute(select(r.connection, func.count()).where(
            done, r.status == "running", r.id.not_in(select(t.locks.c.run_id))).group_by(r.connection)):
        counts[(c, "crashed")] = counts.get((c, "crashed"), 0) + int(n)
    facts.runs = [(c, s, n) for (c, s), n in sorted(counts.items())]
    facts.running = {c: int(n) for c, n in conn.execute(
        select(t.locks.c.connection, func.count()).group_by(t.locks.c.connection))}
    facts.last_success = {c: at for c, at in conn.execute(
        select(r.connection, func.max(r.finished_at)).where(done, r.status.in_(SUCCESS))
        .group_by(r.connection)) if at is not None}
    newest = select(r.connection, func.max(r.id).label("id")).where(
        done, r.status != "running", r.finished_at.is_not(None)).group_by(r.connection).subquery()
    for c, started, finished in conn.execute(select(r.connection, r.started_at, r.finished_at)
                                             .join(newest, newest.c.id == r.id)):
        facts.last_duration[c] = max((finished - started).total_seconds(), 0.0)
    u = t.api_usage.c
    facts.calls = [(c, int(calls or 0), int(credits or 0)) for c, calls, credits in conn.execute(
        select(u.connection, func.sum(u.calls), func.sum(u.credits)).group_by(u.connection))]
    days = {name: spec.meter.day(now) for name, spec in budgets.items()}
    if days:
        for c, day, calls, credits in conn.execute(select(u.connection, u.day, u.calls, u.credits).where(
                u.connection.in_(list(days)), u.day.in_(set(days.values())))):
            if days.get(c) == day:
                facts.today[c] = (int(calls), int(credits))
    f = t.flags.c
    facts.flags = [(c, code, int(n)) for c, code, n in conn.execute(
        select(f.connection, f.code, func.count()).where(f.cleared_at.is_(None))
        .group_by(f.connection, f.code))]
    a = accounts.c
    facts.ledger = [(cur, int(bal or 0), int(debt or 0), int(n)) for cur, bal, debt, n in conn.execute(
        select(a.currency, func.sum(a.balance), func.sum(a.debt), func.count()).group_by(a.currency))]
    return facts


def _major(minor: int, currency: str) -> float:
    try:
        exp = exponent(currency)
    except Exception:  # a currency this build does not know: show minor units rather than nothing
        exp = 0
    return float(Decimal(minor).scaleb(-exp))


class DatabaseCollector(Collector):
    """Reads the figures at scrape time; a database that does not answer gives `database_up 0`."""

    def __init__(self, engine: Engine, budgets: Callable[[], dict[str, BudgetSpec]] = dict,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.budgets = budgets
        self.clock = clock

    def describe(self) -> list[Metric]:
        """Nothing up front (so registering it does not query the database)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families of one scrape."""
        started = time.perf_counter()
        budgets = self.budgets()
        try:
            with self.engine.connect() as conn:
                facts: Facts | None = read_facts(conn, budgets, self.clock())
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            facts = None
        if facts is not None:
            yield from _families(facts, budgets)
        yield GaugeMetricFamily(f"{NS}_database_up", "1 when the scrape could read the database, else 0",
                                value=1 if facts is not None else 0)
        yield GaugeMetricFamily(f"{NS}_metrics_query_seconds", "time the scrape spent reading the database",
                                value=time.perf_counter() - started)


def _families(facts: Facts, budgets: dict[str, BudgetSpec]) -> Iterator[Metric]:
    runs = CounterMetricFamily(f"{NS}_runs", "sync runs that ended (dry runs aside), by connection and "
                               "status", labels=["connection", "status"])
    for c, s, n in facts.runs:
        runs.add_metric([c, s], n)
    yield runs
    running = GaugeMetricFamily(f"{NS}_runs_in_progress", "runs holding their connection's lock now",
                                labels=["connection"])
    for c, n in facts.running.items():
        running.add_metric([c], n)
    yield running
    success = GaugeMetricFamily(f"{NS}_last_success_timestamp_seconds", "end of the newest run that "
                                "finished ok or partial (Unix time)", labels=["connection"])
    for c, at in facts.last_success.items():
        success.add_metric([c], at.astimezone(UTC).timestamp())
    yield success
    duration = GaugeMetricFamily(f"{NS}_last_run_duration_seconds", "how long the newest ended run took",
                                 labels=["connection"])
    for c, seconds in facts.last_duration.items():
        duration.add_metric([c], seconds)
    yield duration
    yield from _api_families(facts, budgets)
    flags = GaugeMetricFamily(f"{NS}_open_flags", "open reconciliation flags by connection and kind (code)",
                              labels=["connection", "kind"])
    for c, code, n in facts.flags:
        flags.add_metric([c, code], n)
    yield flags
    liability = GaugeMetricFamily(f"{NS}_ledger_liability", "prepaid money owed to customers: the sum of "
                                  "account balances, in the currency's major unit", labels=["currency"])
    debt = GaugeMetricFamily(f"{NS}_ledger_credit_used", "credit line drawn by customers: the sum of "
                             "account debts, in the currency's major unit", labels=["currency"])
    count = GaugeMetricFamily(f"{NS}_ledger_accounts", "ledger accounts by currency", labels=["currency"])
    for cur, bal, owed, n in facts.ledger:
        liability.add_metric([cur], _major(bal, cur))
        debt.add_metric([cur], _major(owed, cur))
        count.add_metric([cur], n)
    yield from (liability, debt, count)


def _api_families(facts: Facts, budgets: dict[str, BudgetSpec]) -> Iterator[Metric]:
    calls = CounterMetricFamily(f"{NS}_api_calls", "CRM API calls counted against the budget (every attempt)",
                                labels=["connection"])
    credits = CounterMetricFamily(f"{NS}_api_credits", "CRM API credits spent (Zoho's unit)",
                                  labels=["connection"])
    for c, n, cr in facts.calls:
        calls.add_metric([c], n)
        credits.add_metric([c], cr)
    yield from (calls, credits)
    used = GaugeMetricFamily(f"{NS}_api_used_today", "API units spent today (the connection's day and unit)",
                             labels=["connection", "unit"])
    limit = GaugeMetricFamily(f"{NS}_api_budget", "the connection's daily API budget",
                              labels=["connection", "unit"])
    left = GaugeMetricFamily(f"{NS}_api_budget_remaining", "API units left today under the daily budget",
                             labels=["connection", "unit"])
    for name, spec in budgets.items():
        calls_today, credits_today = facts.today.get(name, (0, 0))
        spent = credits_today if spec.unit == "credits" else calls_today
        used.add_metric([name, spec.unit], spent)
        if spec.limit is not None:
            limit.add_metric([name, spec.unit], spec.limit)
            left.add_metric([name, spec.unit], max(spec.limit - spent, 0))
    yield from (used, limit, left)


