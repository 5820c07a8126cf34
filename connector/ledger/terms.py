"""Contract terms of customers and their contracts: agreed amounts, dates, refund policy, credit limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from connector import visible
from connector.db.engine import write_transaction
from connector.errors import ConnectorError, InvalidInput
from connector.ledger import store
from connector.ledger.planners import customer_key
from connector.ledger.rules import REFUND_POLICIES
from connector.ledger.writer import bulk_update
from connector.money import currency_code, fmt, parse_amount, to_minor
from connector.timeutil import utcnow

TermsHook = Callable[[Connection, list[ConnectorError | None]], None]


class TermsBook:
    """Reads and writes the terms table; a customer's credit limit is kept on its account too."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def set_terms(self, customer: str, currency: str, *, contract_ref: str = "", agreed_amount: object = None,
                  due_date: date | None = None, valid_from: date | None = None,
                  valid_until: date | None = None, refund_policy: str = "full", refund_fee_pct: object = 0,
                  credit_limit: object = 0, low_balance_threshold: object = None,
                  active: bool = True) -> dict[str, Any]:
        """Create or replace the terms of a customer (contract_ref '') or of one of its contracts."""
        row = terms_row(customer, currency, contract_ref=contract_ref, agreed_amount=agreed_amount,
                        due_date=due_date, valid_from=valid_from, valid_until=valid_until,
                        refund_policy=refund_policy, refund_fee_pct=refund_fee_pct, credit_limit=credit_limit,
                        low_balance_threshold=low_balance_threshold, active=active)
        with write_transaction(self.engine) as conn:
            write_terms(conn, [row], self.clock())
        return self.get_terms(row["customer_key"], row["currency"], row["contract_ref"]) or {}

    def set_terms_many(self, items: Sequence[dict[str, Any]], *,
                       hook: TermsHook | None = None) -> list[ConnectorError | None]:
        """`set_terms` for many, in order, in ONE transaction; per item None (written) or the refusal.

        Each item holds `set_terms`' arguments by name (`customer`, `currency`, ...). An invalid
        item writes nothing and does not stop the others; later items win over earlier ones for the
        same terms, as one `set_terms` call after another would. `hook(conn, outcomes)` runs in the
        same transaction.
        """
        rows: list[dict[str, Any]] = []
        outcomes: list[ConnectorError | None] = []
        for item in items:
            try:
                rows.append(terms_row(**item))
                outcomes.append(None)
            except ConnectorError as exc:
                outcomes.append(exc)
        if not items:
            return outcomes
        with write_transaction(self.engine) as conn:
            write_terms(conn, rows, self.clock())
            if hook is not None:
                hook(conn, outcomes)
        return outcomes

    def get_terms(self, customer: str, currency: str, contract_ref: str = "") -> dict[str, Any] | None:
        """Terms as JSON-friendly data, or None."""
        cur = currency_code(currency)
        terms = store.terms
        with self.engine.connect() as conn:
            row = conn.execute(select(terms).where(
                terms.c.customer_key == customer, terms.c.currency == cur,
                terms.c.contract_ref == contract_ref)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        for name in ("agreed_amount", "credit_limit", "low_balance_threshold"):
            if out[name] is not None:
                out[name] = fmt(out[name], cur)
        for name in ("due_date", "valid_from", "valid_until", "updated_at"):
            out[name] = out[name].isoformat() if out[name] else None
        out.pop("id", None)
        return out


def write_terms(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert or replace terms rows; customer-level rows also set their account's credit limit."""
    terms = store.terms
    customer_level = [(r["customer_key"], r["currency"]) for r in rows if r["contract_ref"] == ""]
    states = store.lock_accounts(conn, customer_level, now) if customer_level else {}
    limits: dict[int, int] = {}
    for row in rows:
        row["updated_at"] = now
        if row["contract_ref"] == "":
            limits[states[(row["customer_key"], row["currency"])].id] = row["credit_limit"]
    if limits:
        bulk_update(conn, "UPDATE accounts SET credit_limit = ?, updated_at = ? WHERE id = ?",
                    [(limit, now, acc_id) for acc_id, limit in limits.items()])
    scopes = {(r["customer_key"], r["currency"], r["contract_ref"]) for r in rows}
    customers = sorted({c for c, _, _ in scopes})
    have: set[tuple[str, str, str]] = set()
    for start in range(0, len(customers), 5000):
        have |= {(r.customer_key, r.currency, r.contract_ref) for r in conn.execute(
            select(terms.c.customer_key, terms.c.currency, terms.c.contract_ref).where(
                store.one_of(conn, terms.c.customer_key, customers[start:start + 5000])))}
    # A scope given twice ends with its later row (each row holds every column); new scopes are
    # inserted in the order they first came, the others updated: two statements, however many rows.
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        last[(row["customer_key"], row["currency"], row["contract_ref"])] = row
    new = [row for scope, row in last.items() if scope not in have]
    old = [{**row, "k_customer": scope[0], "k_currency": scope[1], "k_contract": scope[2]}
           for scope, row in last.items() if scope in have]
    if new:
        conn.execute(terms.insert(), new)
    if old:
        conn.execute(terms.update().where(
            terms.c.customer_key == bindparam("k_customer"), terms.c.currency == bindparam("k_currency"),
            terms.c.contract_ref == bindparam("k_contract")).values(
                {name: bindparam(name) for name in old[0] if not name.startswith("k_")}), old)


def terms_row(customer: str, currency: str, *, contract_ref: str = "", agreed_amount: object = None,
              due_date: date | None = None, valid_from: date | None = None, valid_until: date | None = None,
              refund_policy: str = "full", refund_fee_pct: object = 0, credit_limit: object = 0,
              low_balance_threshold: object = None, active: bool = True) -> dict[str, Any]:
    """Validate `set_terms` arguments into a terms row (amounts in minor units)."""
    cur = currency_code(currency)
    customer = customer_key(customer)
    contract_ref = visible.check(contract_ref or "", "contract")
    if refund_policy not in REFUND_POLICIES:
        raise InvalidInput(f"refund_policy: {refund_policy!r} is not one of {', '.join(REFUND_POLICIES)}",
                           field="refund_policy")
    pct = parse_amount(refund_fee_pct, "USD", field="refund_fee_pct", allow_zero=True)
    if pct > 100:
        raise InvalidInput("refund_fee_pct: must be between 0 and 100", field="refund_fee_pct")

    def minor(value: object, name: str, zero: bool = True) -> int | None:
        if value is None:
            return None
        return to_minor(parse_amount(value, cur, field=name, allow_zero=zero), cur)

    return {"customer_key": customer, "currency": cur, "contract_ref": contract_ref,
            "agreed_amount": minor(agreed_amount, "agreed_amount"), "due_date": due_date,
            "valid_from": valid_from, "valid_until": valid_until, "refund_policy": refund_policy,
            "refund_fee_pct": str(pct), "credit_limit": minor(credit_limit, "credit_limit") or 0,
            "low_balance_threshold": minor(low_balance_threshold, "low_balance_threshold"),
            "active": bool(active)}
