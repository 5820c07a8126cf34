"""Property: any interleaving of CRM edits and runs leaves ledger and CRM consistent, tasks unique."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

from helpers import Clock, zoho_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_zoho import ledger_balances, live_payments

OPS = st.lists(st.tuples(st.sampled_from(["new", "edit", "delete", "hand_edit", "status", "run"]),
                         st.integers(0, 10_000)), min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, check_minutes=st.sampled_from([0, 1, 60]))
def test_interleavings_converge(ops: list[tuple[str, int]], check_minutes: int) -> None:
    clock = Clock()
    eng, sb = zoho_engine("sqlite:///:memory:", seed=12, clock=clock,
                          deletion_check=timedelta(minutes=check_minutes))
    org = sb.org
    pays, accounts = org.modules["Prepaid_Payments"], org.modules["Accounts"]
    eng.run()
    for op, n in ops:
        clock.advance(seconds=7)
        live = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
        pick = live[n % len(live)] if live else None
        if op == "new" and pick:
            org.insert(pays, {"Name": f"P{n}", "Account": pick["Account"], "Amount": Decimal(n % 900 + 1),
                              "Currency": pick["Currency"], "Payment_Status": "Received"})
        elif op == "edit" and pick:
            org.update(pays, pick["id"], {"Amount": Decimal(str(pick["Amount"])) + n % 50 + 1})
        elif op == "delete" and pick:
            org.delete(pays, pick["id"])
        elif op == "status" and pick:
            org.update(pays, pick["id"], {"Payment_Status": "Pending" if n % 2 else "Received"})
        elif op == "hand_edit":
            acc = list(accounts.records)[n % len(accounts.records)]
            org.update(accounts, acc, {"Prepaid_Balance": Decimal(n)})
        else:
            eng.run()
    clock.advance(minutes=check_minutes, seconds=7)  # deletions are noticed within the check interval
    eng.run()
    clock.advance(seconds=7)
    final = eng.run()
    assert final.records_written == 0 and final.deposits_posted == 0 and final.reversals_posted == 0
    balances = ledger_balances(eng.engine)
    assert balances == live_payments(sb)
    for acc in accounts.records.values():
        key = f"zoho:Accounts:{acc['id']}"
        if acc.get("Currency"):
            assert Decimal(str(acc["Prepaid_Balance"])) == balances.get(key, Decimal(0))
    markers = Counter(r.get("Prepaid_Sync_Marker") for r in org.modules["Tasks"].records.values())
    assert all(c == 1 for m, c in markers.items() if m)
