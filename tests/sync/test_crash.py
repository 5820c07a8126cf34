"""Fault tests: a real `prepaid-sync sync run` process SIGKILLed at instrumented points, then re-run to the
end.

No kill waits on a timer: each lands at a CRM request (`killpoints.SandboxTap`) or at a named point in
the ledger (`connector.testpoints`), so every round kills its run, however loaded the machine is."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli.sync_cmd import write_config
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.sync import tables as t

from killpoints import WAIT, SandboxTap, kill_env


PAYMENT_FIELDS = ("Account", "Deal", "Currency", "Payment_Date", "Payment_Status", "Payment_Method")
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def _is_write(method: str, path: str) -> bool:
    """A write-back to the CRM (not a token refresh, not a COQL query, which are POSTs too)."""
    return method in WRITES and "/oauth/" not in path and not path.endswith("/coql")


def _run(cfg: Path, tap: SandboxTap, point: tuple[str, int] | None = None) -> int:
    """One `sync run` process; with `point`, it is SIGKILLed there. Its exit code (-9: killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")}
    kind, nth = point or ("", 0)
    if kind.startswith("ledger."):
        env.update(kill_env(kind, nth))
    if kind == "request-before":
        tap.arm(nth, "before")
    elif kind == "write-after":
        tap.arm(nth, "after", match=_is_write)
    proc = tap.attach(
        subprocess.Popen([sys.executable, "-m", "connector", "sync", "run", "--config",
                          str(cfg), "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        return proc.wait(timeout=WAIT)
    finally:
        tap.disarm()
        if proc.poll() is None:
            proc.kill()


def _points(rng: random.Random, rounds: int) -> list[tuple[str, int]]:
    """Where each round's run dies, in turn: before its n-th CRM request (never applied), just after its
    first write-back landed in the CRM (the answer never heard), with a batch of postings and its cursor
    written but not committed, and just after that commit."""
    kinds = ["request-before", "write-after", "ledger.batch_written", "ledger.batch_committed"]
    # A run here makes 11 requests (3 settings, token, 4 reads, /deleted, writes): n <= 9 always lands.
    return [(k, rng.randint(1, 9) if k == "request-before" else 1)
            for k in (kinds[i % len(kinds)] for i in range(rounds))]


def _expected(sb: ZohoSandbox) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for p in sb.org.modules["Prepaid_Payments"].records.values():
        acc = (p.get("Account") or {}).get("id") or f"unassigned-payment-{p['id']}"  # no customer: held apart
        if p.get("Payment_Status") == "Received" and p.get("Currency"):
            out[f"zoho:Accounts:{acc}"] = out.get(f"zoho:Accounts:{acc}", Decimal(0)) + Decimal(
                str(p["Amount"]))
    return out


def test_sigkill_at_instrumented_points_then_rerun_converges(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    rounds = int(os.environ.get("CRASH_ROUNDS", "4"))  # one of each kind of point
    with ZohoSandbox(seed=150, latency_ms=3) as sb:
        tap = SandboxTap(sb.app)
        # Deletions are made between runs seconds apart: check `/deleted` on every run.
        write_config(tmp_path, "zoho", sandbox=sb.api_domain, extra={"deletion_check_minutes": 0})
        cfg = tmp_path / "prepaid-sync.toml"
        org = sb.org
        pays = org.modules["Prepaid_Payments"]
        for i, point in enumerate(_points(rng, rounds)):
            before = len(tap.requests)
            code = _run(cfg, tap, point)
            assert code == -signal.SIGKILL, (
                f"round {i}: the run was to die at {point} but exited {code} after "
                f"{len(tap.requests) - before} requests")
            live = [
                r for r in pays.records.values() if (r.get("Account") or {}).get("id") and r.get("Currency")
            ]
            victim = live[rng.randrange(len(live))]
            if i % 2:
                org.delete(pays, victim["id"])
            else:
                org.update(pays, victim["id"], {"Amount": Decimal(str(victim["Amount"])) + 3})
            acc_id = rng.choice(list(org.modules["Accounts"].records))
            org.update(org.modules["Accounts"], acc_id, {"Prepaid_Balance": Decimal("4242.00")})
            # A new payment each round: every run has postings to make, so the ledger points are reached.
            model = live[rng.randrange(len(live))]
            org.insert(pays, {**{k: model[k] for k in PAYMENT_FIELDS if k in model}, "Name": f"PAY-CRASH-{i}",
                              "Amount": Decimal("11.00")})
            # Zoho keeps modified times to the second: move the org's clock on instead of sleeping.
            sb.config.clock_offset += 1.05
        assert _run(cfg, tap) == 0
        sb.config.clock_offset += 1.05
        assert _run(cfg, tap) == 0
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
