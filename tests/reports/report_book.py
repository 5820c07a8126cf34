"""A small book of customers whose report figures are computed by hand in test_figures.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine

from connector.ledger import Ledger
from connector.reports.attributes import CustomerInfo, StaticAttributes

AS_OF = datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)   # `--as-of 2026-06-30`
NOW = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
ATTRS = StaticAttributes({
    "acme": CustomerInfo(name="Acme 有限公司", owner="li", tier="gold"),
    "bolt": CustomerInfo(name="Bolt", owner="wang", tier="silver", flags=("vip_watch",), kind="individual"),
    "delta": CustomerInfo(owner="li", tier="gold"),
})


def d(y: int, m: int, day: int) -> datetime:
    """Midnight UTC."""
    return datetime(y, m, day, tzinfo=UTC)


@dataclass
class Book:
    """The seeded ledger."""

    engine: Engine
    ledger: Ledger
    url: str


def seed(ledger: Ledger) -> None:
    """Five customers; see the module docstring of test_figures.py for the hand computation."""
    lg = ledger
    # acme: paid 4 days late; steady use; its only lot expires in 20 days.
    lg.set_terms("acme", "CNY", due_date=date(2026, 3, 1), agreed_amount="10000")
    lg.deposit("acme", "10000", "CNY", "a1", effective_at=d(2026, 3, 5), expires_at=d(2026, 7, 21),
               source=("zoho", "PAY-1"), memo="合同 C-1 预付款")
    lg.consume("acme", "3000", "CNY", "a2", effective_at=d(2026, 4, 15))
    lg.consume("acme", "1500", "CNY", "a3", effective_at=d(2026, 5, 20))
    lg.consume("acme", "1500", "CNY", "a4", effective_at=d(2026, 6, 10))
    # bolt: "no refund" terms, a bonus lot, and a payment short of the agreed amount (overdue).
    lg.set_terms("bolt", "CNY", due_date=date(2026, 6, 1), agreed_amount="20000", refund_policy="none")
    lg.deposit("bolt", "5000", "CNY", "b1", effective_at=d(2026, 5, 25))
    lg.adjust("bolt", "1000", "CNY", "b2", memo="bonus", effective_at=d(2026, 5, 25),
              expires_at=d(2026, 8, 16))
    lg.consume("bolt", "1200", "CNY", "b3", effective_at=d(2026, 6, 20))
    # cobalt: a one-year time card (pro rata), little use long ago.
    lg.set_terms("cobalt", "USD", refund_policy="pro_rata")
    lg.deposit("cobalt", "1200", "USD", "c1", effective_at=d(2026, 1, 1), expires_at=d(2027, 1, 1))
    lg.consume("cobalt", "300", "USD", "c2", effective_at=d(2026, 2, 1))
    # delta: lives on its credit line; one consumption reversed.
    lg.set_terms("delta", "CNY", credit_limit="1000")
    lg.consume("delta", "300", "CNY", "d1", effective_at=d(2026, 6, 25))
    r = lg.consume("delta", "100", "CNY", "d2", effective_at=d(2026, 6, 26))
    lg.reverse(r.entry_ids[0], "d3", effective_at=d(2026, 6, 27))
    # echo: an expired lot not yet swept, and a paid lot marked non-refundable.
    lg.deposit("echo", "800", "CNY", "e1", effective_at=d(2026, 6, 1), expires_at=d(2026, 6, 21))
    lg.deposit("echo", "100", "CNY", "e2", effective_at=d(2026, 6, 1), refundable=False)
