"""`verify`: recompute every balance and lot remainder from the entries and allocations.

All checks run as set-based SQL so they stay fast on millions of entries. Each finding names
the account or lot and the numbers that disagree. Sums are split into billions and remainders
(`db.exact_sum_sql`) so that no running total overflows SQLite's 64-bit SUM, even on corrupt data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from connector.db.engine import SUM_SPLIT, exact_sum_sql

_SUM = exact_sum_sql("amount")
_RUNNING = (f"SUM(amount / {SUM_SPLIT}) OVER w * {SUM_SPLIT} + SUM(amount % {SUM_SPLIT}) OVER w")
CHECKS: dict[str, str] = {
    "account balance != sum of its entries": f"""
        SELECT a.id, a.customer_key, a.currency, a.balance, COALESCE(s.total, 0) AS total
        FROM accounts a LEFT JOIN (SELECT account_id, {_SUM} AS total FROM entries GROUP BY account_id) s
          ON s.account_id = a.id
        WHERE a.balance <> COALESCE(s.total, 0)""",
    "entry balance_after != running sum in recording order": f"""
        SELECT id, account_id, balance_after, running FROM (
            SELECT id, account_id, balance_after,
                   {_RUNNING} AS running
            FROM entries WINDOW w AS (PARTITION BY account_id ORDER BY id ROWS UNBOUNDED PRECEDING)) t
        WHERE balance_after <> running""",
    "entry amount != sum of its allocations": f"""
        SELECT e.id, e.amount, COALESCE(s.total, 0) AS total
        FROM entries e LEFT JOIN (SELECT entry_id, {_SUM} AS total FROM allocations GROUP BY entry_id) s
          ON s.entry_id = e.id
        WHERE e.amount <> COALESCE(s.total, 0)""",
    "lot remaining != sum of its allocations": f"""
        SELECT l.id, l.account_id, l.remaining, COALESCE(s.total, 0) AS total
        FROM lots l LEFT JOIN (SELECT lot_id, {_SUM} AS total FROM allocations
                               WHERE lot_id IS NOT NULL GROUP BY lot_id) s ON s.lot_id = l.id
        WHERE l.remaining <> COALESCE(s.total, 0)""",
    "lot remaining outside [0, amount]": """
        SELECT id, account_id, amount, remaining FROM lots WHERE remaining < 0 OR remaining > amount""",
    "account debt != credit-line allocations": f"""
        SELECT a.id, a.customer_key, a.debt, COALESCE(s.total, 0) AS total
        FROM accounts a LEFT JOIN (
            SELECT e.account_id, -{exact_sum_sql("al.amount")} AS total
            FROM allocations al JOIN entries e ON e.id = al.entry_id WHERE al.lot_id IS NULL GROUP BY e.account_id) s ON s.account_id = a.id
        WHERE a.debt <> COALESCE(s.total, 0)""",  # noqa: E501 - SQL text kept as it is
    "account balance != open lots - debt": f"""
        SELECT a.id, a.customer_key, a.balance, COALESCE(s.total, 0) - a.debt AS expected
        FROM accounts a LEFT JOIN (SELECT account_id, {exact_sum_sql("remaining")} AS total FROM lots
                                   GROUP BY account_id) s ON s.account_id = a.id
        WHERE a.balance <> COALESCE(s.total, 0) - a.debt""",
    "allocation moves a lot of another account": """
        SELECT al.id, al.entry_id, al.lot_id FROM allocations al
        JOIN entries e ON e.id = al.entry_id JOIN lots l ON l.id = al.lot_id
        WHERE l.account_id <> e.account_id""",
    "posting without entries": """
        SELECT p.key FROM postings p WHERE p.first_entry_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM entries e WHERE e.id BETWEEN p.first_entry_id AND p.last_entry_id
                                      AND e.posting_key = p.key)""",
    "entry outside its posting's entry range": """
        SELECT e.id, e.posting_key, p.first_entry_id, p.last_entry_id FROM entries e
        JOIN postings p ON p.key = e.posting_key
        WHERE e.id < p.first_entry_id OR e.id > p.last_entry_id""",
}


@dataclass
class VerifyReport:
    """What `verify` checked and what it found."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"ok": self.ok, "counts": self.counts, "problems": self.problems}


def verify(engine: Engine, *, limit: int = 100) -> VerifyReport:
    """Run every check; report up to `limit` findings per check."""
    report = VerifyReport()
    with engine.connect() as conn:
        for table in ("accounts", "lots", "entries", "allocations", "postings"):
            report.counts[table] = int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
        for name, sql in CHECKS.items():
            for row in conn.execute(text(sql + f" LIMIT {int(limit)}")):
                report.problems.append({"check": name, **{k: _plain(v) for k, v in row._mapping.items()}})
    return report


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, str, type(None))) else str(value)
