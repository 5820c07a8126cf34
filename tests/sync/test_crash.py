"""Fault tests: a real `prepaid-sync sync run` process SIGKILLed at random points, then re-run to the end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli.sync_cmd import write_config
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.sync import tables as t


def _run(cfg: Path, kill_after: float | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")}
    proc = subprocess.Popen([sys.executable, "-m", "connector", "sync", "run", "--config", str(cfg), "--json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return proc.wait(timeout=120)
    try:
        return proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return -9


def _expected(sb: ZohoSandbox) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for p in sb.org.modules["Prepaid_Payments"].records.values():
        acc = (p.get("Account") or {}).get("id") or f"unassigned-payment-{p['id']}"  # no customer: held apart
        if p.get("Payment_Status") == "Received" and p.get("Currency"):
            out[f"zoho:Accounts:{acc}"] = out.get(f"zoho:Accounts:{acc}", Decimal(0)) + Decimal(str(p["Amount"]))
    return out


def test_sigkill_at_random_points_then_rerun_converges(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    rounds = int(os.environ.get("CRASH_ROUNDS", "4"))
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        # Deletions are made between runs seconds apart: check `/deleted` on every run.
        write_config(tmp_path, "zoho", sandbox=sb.api_domain, extra={"deletion_check_minutes": 0})
        cfg = tmp_path / "prepaid-sync.toml"
        org = sb.org
        pays = org.modules["Prepaid_Payments"]
        killed = 0
        for i in range(rounds):
            if _run(cfg, rng.uniform(0.3, 2.5)) == -9:
                killed += 1
            live = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")]
            victim = live[rng.randrange(len(live))]
            if i % 2:
                org.delete(pays, victim["id"])
            else:
                org.update(pays, victim["id"], {"Amount": Decimal(str(victim["Amount"])) + 3})
            acc_id = rng.choice(list(org.modules["Accounts"].records))
            org.update(org.modules["Accounts"], acc_id, {"Prepaid_Balance": Decimal("4242.00")})
            time.sleep(1.05)  # one-second modified-time resolution
        assert killed >= 1, "no run was killed; raise the kill window"
        assert _run(cfg, None) == 0
        time.sleep(1.05)
        assert _run(cfg, None) == 0
        engine = make_engine(f"sqlite:///{tmp_path / 'prepaid-sync.db'}")
        balances: dict[str, Decimal] = {}
        for v in Ledger(engine).accounts():
            balances[v.customer] = balances.get(v.customer, Decimal(0)) + v.balance
        assert {k: v for k, v in balances.items() if v} == _expected(sb)
        markers = Counter(r.get("Prepaid_Sync_Marker") for r in org.modules["Tasks"].records.values()
                          if r.get("Prepaid_Sync_Marker"))
        assert markers and max(markers.values()) == 1
        with engine.connect() as conn:
            assert {r.status for r in conn.execute(select(t.outbox))} <= {"ok", "superseded"}
        for acc in org.modules["Accounts"].records.values():  # every write applied: CRM shows the ledger
            key = f"zoho:Accounts:{acc['id']}"
            if key in balances and acc.get("Currency"):
                assert Decimal(str(acc["Prepaid_Balance"])) == balances[key]
        engine.dispose()
