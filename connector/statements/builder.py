"""Customer statements from the ledger, loaded in chunks of accounts so `--all` scales to many customers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from connector.compliance.refunds import refund_figures
from connector.compliance.rules import ComplianceRules
from connector.errors import NotFound
from connector.ledger import standing
from connector.ledger.store import terms as terms_table
from connector.ledger.standing import Standing
from connector.money import fmt
from connector.reports import queries as q
from connector.reports.attributes import CustomerAttributes, NoAttributes, standing_inputs

E, A = q.E, q.A
TICK = timedelta(microseconds=1)


@dataclass(slots=True)
class Line:
    """One entry on a statement (amount signed, minor units)."""

    entry_id: int
    at: datetime
    kind: str
    amount: int
    running: int
    reference: str
    memo: str


@dataclass(slots=True)
class LotLine:
    """A lot with money left at the end of the period."""

    lot_id: int
    received: datetime
    expires: datetime | None
    amount: int
    remaining: int
    refundable: bool


@dataclass(slots=True)
class Section:
    """One currency of a customer's statement."""

    currency: str
    opening: int
    closing: int = 0
    lines: list[Line] = field(default_factory=list)
    lots: list[LotLine] = field(default_factory=list)
    policy: str = "full"
    fee_pct: Decimal = Decimal(0)
    refundable: int = 0
    # the policy the refundable figure was computed under (the rules may void a term)
    rules_policy: str = "full"
    refund_notes: list[str] = field(default_factory=list)  # why the rules' figure differs from the contract's
    standing: tuple[str, ...] = ()  # overdue / expiring_soon / expired / orphaned (connector.ledger.standing)
    contract_ends: date | None = None

    def totals(self) -> dict[str, int]:
        """Sum of amounts per entry kind in the period."""
        out: dict[str, int] = {}
        for line in self.lines:
            out[line.kind] = out.get(line.kind, 0) + line.amount
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        c = self.currency
        return {
            "currency": c, "opening": fmt(self.opening, c), "closing": fmt(self.closing, c), "entries": [{
                "id": x.entry_id, "date": x.at.isoformat(), "kind": x.kind, "amount": fmt(x.amount, c),
                "balance": fmt(x.running, c), "reference": x.reference, "memo": x.memo
            } for x in self.lines], "totals": {k: fmt(v, c)
                                               for k, v in sorted(self.totals().items())},
            "lots": [{
                "lot": x.lot_id, "received": x.received.isoformat(),
                "expires": x.expires.isoformat() if x.expires else None, "amount": fmt(x.amount, c),
                "remaining": fmt(x.remaining, c), "refundable": x.refundable
            } for x in self.lots], "refund_policy": self.policy, "refund_fee_pct": str(self.fee_pct),
            "refundable": fmt(self.refundable, c), "refundable_policy": self.rules_policy,
            "refund_notes": self.refund_notes, "standing": list(self.standing),
            "contract_ends": self.contract_ends.isoformat() if self.contract_ends else None
        }


@dataclass(slots=True)
class CustomerStatement:
    """A customer's statement: one section per currency."""

    customer: str
    name: str | None
    start: datetime | None
    end: datetime
    sections: list[Section] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"customer": self.customer, "name": self.name,
                "from": self.start.isoformat() if self.start else None, "to": self.end.isoformat(),
                "sections": [s.to_dict() for s in self.sections]}


class StatementLoader:
    """Builds statements for a period [start, end) under the rules in force."""

    def __init__(self, engine: Engine, start: datetime | None, end: datetime, *,
                 attributes: CustomerAttributes | None = None, rules: ComplianceRules | None = None,
                 currency: str | None = None, chunk: int = 2000) -> None:
        self.engine, self.start, self.end, self.currency, self.chunk = engine, start, end, currency, chunk
        self.attributes = attributes or NoAttributes()
        self.rules = rules or ComplianceRules()

    def one(self, customer: str) -> CustomerStatement:
        """The statement of one customer; NotFound when it has no account."""
        with self.engine.connect() as conn:
            query = select(A.c.id, A.c.customer_key, A.c.currency).where(A.c.customer_key == customer)
            if self.currency:
                query = query.where(A.c.currency == self.currency)
            accounts = conn.execute(query.order_by(A.c.currency)).all()
            if not accounts:
                what = f"customer {customer}" + (f" in {self.currency}" if self.currency else "")
                raise NotFound(f"{what} has no ledger account", customer=customer)
            return next(self._build(conn, accounts, q.latest_effective(conn)))

    def with_balance(self) -> Iterator[CustomerStatement]:
        """Statements of every customer with a non-zero closing balance, in customer order."""
        return self.statements(self.accounts_with_balance())

    def accounts_with_balance(self) -> list[Any]:
        """(id, customer_key, currency) of each account with a non-zero closing balance, by customer."""
        per = (select(E.c.account_id, func.sum(E.c.amount).label("bal")).where(E.c.effective_at < self.end)
               .group_by(E.c.account_id).subquery())
        query = (select(A.c.id, A.c.customer_key, A.c.currency).join(per, per.c.account_id == A.c.id)
                 .where(per.c.bal != 0).order_by(A.c.customer_key, A.c.currency))
        if self.currency:
            query = query.where(A.c.currency == self.currency)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def statements(self, accounts: Sequence[Any]) -> Iterator[CustomerStatement]:
        """Statements of the customers of `accounts` (rows as `accounts_with_balance` gives, in that order),
        read `chunk` accounts at a time."""
        with self.engine.connect() as conn:
            latest = q.latest_effective(conn)
            batch: list[Any] = []
            for acc in accounts:
                if len(batch) >= self.chunk and batch[-1].customer_key != acc.customer_key:
                    yield from self._build(conn, batch, latest)
                    batch = []
                batch.append(acc)
            if batch:
                yield from self._build(conn, batch, latest)

    def _build(self, conn: Connection, accounts: Sequence[Any],
               latest: datetime | None) -> Iterator[CustomerStatement]:
        ids = [a.id for a in accounts]
        opening: dict[int, int] = {}
        if self.start is not None:
            opening = {acc: int(total) for acc, total in conn.execute(
                select(E.c.account_id, func.sum(E.c.amount)).where(E.c.account_id.in_(ids),
                                                                   E.c.effective_at < self.start)
                .group_by(E.c.account_id))}
        lines: dict[int, list[Any]] = defaultdict(list)
        query = (select(E.c.id, E.c.account_id, E.c.kind, E.c.amount, E.c.effective_at, E.c.source_system,
                        E.c.source_id, E.c.posting_key, E.c.memo)
                 .where(E.c.account_id.in_(ids), E.c.effective_at < self.end))
        if self.start is not None:
            query = query.where(E.c.effective_at >= self.start)
        for r in conn.execute(query.order_by(E.c.account_id, E.c.effective_at, E.c.id)):
            lines[r.account_id].append(r)
        lots: dict[int, list[Any]] = defaultdict(list)
        for ol in q.open_lots(conn, self.end - TICK, ids, latest=latest):
            lots[ol.account_id].append((ol.state, ol.kind))
        totals = q.lot_totals(conn, self.end - TICK, ids)
        debts = q.debts(conn, self.end - TICK, ids)
        keys = sorted({a.customer_key for a in accounts})
        t = terms_table
        policies = {(r.customer_key, r.currency): (r.refund_policy, Decimal(r.refund_fee_pct))
                    for r in conn.execute(
                        select(t.c.customer_key, t.c.currency, t.c.refund_policy, t.c.refund_fee_pct).where(
                            t.c.customer_key.in_(keys), t.c.contract_ref == ""))}
        names = self.attributes.lookup(keys)
        rules, orphaned = standing_inputs(self.attributes)
        standings = standing.load(conn, self.end - TICK, rules, orphaned=orphaned, customers=keys)
        current: CustomerStatement | None = None
        for acc in accounts:
            if current is None or current.customer != acc.customer_key:
                if current is not None:
                    yield current
                info = names.get(acc.customer_key)
                current = CustomerStatement(acc.customer_key, info.name if info else None, self.start,
                                            self.end)
            current.sections.append(
                self._section(acc, opening.get(acc.id, 0), lines[acc.id], lots[acc.id],
                              totals.get(acc.id, (0, 0)), debts.get(acc.id, 0),
                              policies.get((acc.customer_key, acc.currency), ("full", Decimal(0))),
                              standings.get((acc.customer_key, acc.currency))))
        if current is not None:
            yield current

    def _section(self, acc: Any, opening: int, rows: list[Any], lots: list[Any], totals: tuple[int, int],
                 debt: int, policy: tuple[str, Decimal], st: Standing | None = None) -> Section:
        sec = Section(acc.currency, opening, policy=policy[0], fee_pct=policy[1])
        running = opening
        for r in rows:
            running += r.amount
            sec.lines.append(
                Line(r.id, q.aware(r.effective_at), r.kind, int(r.amount), running, q.reference(r), r.memo or
                     ""))
        sec.closing = running
        sec.lots = sorted((LotLine(s.id, s.effective_at, s.expires_at, s.amount, s.remaining, s.refundable)
                           for s, _ in lots), key=lambda x:
                          (x.expires is None, x.expires or x.received, x.lot_id))
        at = self.end - TICK
        fig = refund_figures(lots, paid=totals[0], granted=totals[1], debt=debt, policy=policy[0],
                             fee_pct=policy[1], rules=self.rules, at=at)
        sec.refundable, sec.rules_policy, sec.refund_notes = fig.rules, fig.rules_policy, sorted(
            set(fig.notes))
        if st is not None:
            sec.standing, sec.contract_ends = st.codes(), st.ends
        return sec
