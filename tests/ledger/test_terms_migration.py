"""Issue 11.4: each contract wrote two terms rows; migration 0004 clears the customer-level copy, keeps
hand-set customer terms, leaves the ledger's history alone, and the report counts each contract once."""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import create_engine, text

from connector.ledger import Ledger
from connector.db.engine import _alembic_config, make_engine
from connector.reports import build_report

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _old_style(url: str) -> None:
    """A ledger at revision 0003, its terms written the old way (contract row + customer-level copy)."""
    # Today's posting path writes today's schema: post at head, then go back to 0003 (0005's downgrade too).
    raw = create_engine(url)
    command.upgrade(_alembic_config(raw), "head")
    engine = make_engine(url, upgrade=False)
    ledger = Ledger(engine, clock=lambda: NOW)
    ledger.deposit("zoho:Accounts:1", "1000", "USD", "pay-1", effective_at=datetime(2026, 1, 20, tzinfo=UTC))
    ledger.deposit("ledger:only", "0.01", "USD", "pay-2", effective_at=datetime(2026, 1, 20, tzinfo=UTC))
    engine.dispose()
    command.downgrade(_alembic_config(raw), "0003")
    raw.dispose()
    engine = make_engine(url, upgrade=False)
    with engine.begin() as conn:
        for ref in ("zoho:Deals:9", ""):
            conn.execute(
                text("INSERT INTO terms (customer_key, currency, contract_ref, agreed_amount, due_date, "
                     "valid_from, valid_until, refund_policy, refund_fee_pct, credit_limit, updated_at) "
                     "VALUES ('zoho:Accounts:1', 'USD', :ref, 100000, '2026-02-01', '2025-06-01', "
                     "'2027-01-01', 'none', '0', 0, '2026-01-01 00:00:00')"), {"ref": ref})
        conn.execute(
            text("INSERT INTO terms (customer_key, currency, contract_ref, agreed_amount, due_date, "
                 "refund_policy, refund_fee_pct, credit_limit, updated_at) VALUES ('ledger:only', 'USD', '', "
                 "5000, '2026-02-01', 'full', '0', 0, '2026-01-01 00:00:00')"))
    engine.dispose()


def test_migration_keeps_one_due_date_per_contract(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    _old_style(url)
    engine = make_engine(url)  # upgrades to head
    with engine.connect() as conn:
        rows = {(r.customer_key, r.contract_ref): r for r in conn.execute(text("SELECT * FROM terms"))}
        entries = conn.execute(text("SELECT count(*) FROM entries")).scalar()
    copy = rows[("zoho:Accounts:1", "")]
    assert (copy.agreed_amount, copy.due_date, copy.valid_until, copy.refund_policy) == (None, None, None,
                                                                                         "none")
    assert rows[("zoho:Accounts:1", "zoho:Deals:9")].due_date is not None
    assert rows[("ledger:only", "")].due_date is not None  # set by hand, no contract rows: kept as it was
    assert entries == 2
    report = build_report(engine, NOW)
    row = next(r for r in report.accounts if r.customer == "zoho:Accounts:1")
    assert [(p.contract_ref, p.status) for p in row.payments] == [("zoho:Deals:9", "on_time")]
    assert report.punctuality.open_overdue == 1  # ledger:only, never paid
    assert report.standing_counts()["overdue"] == 1


def test_sync_terms_write_the_contract_once() -> None:
    """What the pull writes now: the customer-level row carries no contract dates or amount."""
    engine = make_engine("sqlite://")
    ledger = Ledger(engine, clock=lambda: NOW)
    ledger.set_terms_many([{
        "customer": "zoho:Accounts:1", "currency": "USD", "contract_ref": "zoho:Deals:9",
        "agreed_amount": "1000", "due_date": date(2026, 2, 1), "refund_policy": "none"
    }, {"customer": "zoho:Accounts:1", "currency": "USD", "refund_policy": "none"}])
    ledger.deposit("zoho:Accounts:1", "1000", "USD", "pay-1", effective_at=datetime(2026, 1, 20, tzinfo=UTC))
    report = build_report(engine, NOW)
    assert report.punctuality.payments == 1 and report.punctuality.open_overdue == 0
