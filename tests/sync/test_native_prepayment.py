"""Fxiaoke native prepayment balances (CustomerAccountObj) reconciled against the ledger: amount_mismatch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from connector.errors import ConfigError
from connector.ledger import Ledger
from connector.mapping.loader import DEFAULTS, parse_mapping
from connector.sync import tables as t
from helpers import fxiaoke_engine

NATIVE = {"module": "CustomerAccountObj", "fields": {"customer_id": {"crm": "customer_id", "type": "lookup"},
                                                     "balance": {"crm": "prepay_balance", "type": "money"}}}


def _mapping(**extra: Any) -> Any:
    data = yaml.safe_load((DEFAULTS / "fxiaoke.yaml").read_text())
    return parse_mapping({**data, **extra})


def _native_flags(eng: Any) -> dict[str, str]:
    """Open amount_mismatch flags that name the native balance, by customer key."""
    with eng.engine.connect() as conn:
        rows = conn.execute(select(t.flags).where(t.flags.c.code == "amount_mismatch",
                                                  t.flags.c.cleared_at.is_(None))).all()
    return {r.customer_id: r.detail for r in rows if "CRM prepayment balance" in r.detail}


def _expected(eng: Any, app: Any) -> dict[str, tuple[Decimal, Decimal]]:
    """Customer key -> (native, ledger) for every customer whose two balances differ."""
    native: dict[str, Decimal] = {}
    for row in app.store.table("CustomerAccountObj").rows.values():
        if row.get("life_status") != "invalid":
            key = f"fxiaoke:AccountObj:{row['customer_id']}"
            native[key] = native.get(key, Decimal(0)) + Decimal(str(row["prepay_balance"]))
    views = Ledger(eng.engine).balances_with_prefix("fxiaoke:AccountObj:")
    ledger = {k: v.balance for (k, _cur), v in views.items()}
    return {k: (n, ledger.get(k, Decimal(0))) for k, n in native.items() if n != ledger.get(k, Decimal(0))}


def test_native_balance_differences_raise_amount_mismatch_with_both_values(tmp_path: object) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    eng.mapping = _mapping(prepayment=NATIVE)
    store, admin = app.store, app.credentials.open_user_id
    first = eng.run()
    assert first.pulled["prepayment"] == len(store.table("CustomerAccountObj").rows)
    expected = _expected(eng, app)
    flagged = _native_flags(eng)
    assert set(flagged) == set(expected)
    for key, (native, ledger) in expected.items():
        assert f"CRM prepayment balance {native} CNY" in flagged[
            key] and f"ledger balance {ledger} CNY" in flagged[key]
    seeded = {f"fxiaoke:AccountObj:{store.table('CustomerAccountObj').rows[a]['customer_id']}"
              for a in app.anomalies.by_kind["account_balance_mismatch"]}
    assert seeded and seeded <= set(flagged)
    accounts = store.table("CustomerAccountObj").rows
    fixed_id = next(a for a, r in accounts.items() if f"fxiaoke:AccountObj:{r['customer_id']}" in expected)
    fixed_key = f"fxiaoke:AccountObj:{accounts[fixed_id]['customer_id']}"
    broken_id = next(a for a, r in accounts.items()
                     if f"fxiaoke:AccountObj:{r['customer_id']}" not in expected)
    broken_key = f"fxiaoke:AccountObj:{accounts[broken_id]['customer_id']}"
    right = Decimal(str(accounts[broken_id]["prepay_balance"]))
    eng.clock.advance(minutes=5)
    store.update("CustomerAccountObj", fixed_id, {"prepay_balance": f"{expected[fixed_key][1]:.2f}"}, admin)
    store.update("CustomerAccountObj", broken_id, {"prepay_balance": f"{right + 5:.2f}"}, admin)
    eng.clock.advance(minutes=5)
    report = eng.run()
    assert report.pulled["prepayment"] == 2
    now = _native_flags(eng)
    assert fixed_key not in now
    assert now[broken_key] == f"CRM prepayment balance {right + 5:.2f} CNY, ledger balance {right:.2f} CNY"
    assert "amount_mismatch" in store.table("AccountObj").rows[broken_key.rsplit(":",
                                                                                 1)[1]]["prepaid_flags__c"]
    eng.clock.advance(minutes=5)
    quiet = eng.run()
    assert quiet.flags_opened == quiet.flags_cleared == 0 and _native_flags(eng) == now


def test_without_the_mapping_switch_native_balances_are_not_read(tmp_path: object) -> None:
    eng, _app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    report = eng.run()
    assert "prepayment" not in report.pulled and _native_flags(eng) == {}


def test_prepayment_mapping_needs_customer_and_balance() -> None:
    with pytest.raises(ConfigError, match="prepayment.fields: map both customer_id and balance"):
        _mapping(prepayment={"module": "CustomerAccountObj",
                             "fields": {"customer_id": {"crm": "customer_id", "type": "lookup"}}})
