"""`prepaid-sync demo`: a walkthrough of the ledger on a fresh SQLite file, offline.

It shows lots and drawdown order, a refused overspend, an idempotent replay, a refund under a
fee policy, expiry, a reversal and `verify`. (It becomes a full sync against the sandbox once
the sync engine lands.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from connector.cli.common import handled, out, state
from connector.errors import LedgerRuleError
from connector.ledger import Ledger
from connector.timeutil import utcnow
from connector.ledger.verify import verify


def demo(path: Annotated[Path, typer.Option("--path", help="SQLite file for the demo ledger (recreated).")] =
         Path("prepaid-sync-demo.db")) -> None:
    """Walk through the ledger on a fresh demo database (offline, SQLite)."""
    with handled(False):
        url = state.db
        if url is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        ledger = Ledger.open(url)
        now = utcnow()
        acme, wu = "zoho:Accounts:4876876000000123", "fxiaoke:AccountObj:65f0c1a2e4b0"
        step = _stepper()

        step("Two customers prepay; a promotional credit expires sooner and is used first")
        ledger.deposit(acme, "5000.00", "CNY", "demo:pay:1", effective_at=now - timedelta(days=40),
                       source=("zoho", "Payments:1"), memo="annual prepayment")
        ledger.deposit(acme, "300.00", "CNY", "demo:promo:1", effective_at=now - timedelta(days=40),
                       expires_at=now - timedelta(days=5), refundable=False, memo="welcome credit")
        ledger.deposit(acme, "200.00", "CNY", "demo:promo:2", effective_at=now - timedelta(days=1),
                       expires_at=now + timedelta(days=20), refundable=False, memo="loyalty credit")
        ledger.deposit(wu, "12000.00", "CNY", "demo:pay:2", source=("fxiaoke", "PaymentObj:9"))
        r = ledger.consume(acme, "120.00", "CNY", "demo:use:1", effective_at=now - timedelta(days=30))
        _allocs(r.data)

        step("The same consumption arrives again (a retried webhook): nothing is written twice")
        again = ledger.consume(acme, "120.00", "CNY", "demo:use:1", effective_at=now - timedelta(days=30))
        out.print(f"status: [bold]{again.status}[/], balance still {again.data['balance']}")

        step("Overspending is refused, and the message says why")
        try:
            ledger.consume(wu, "20000.00", "CNY", "demo:use:too-much")
        except LedgerRuleError as exc:
            out.print(f"[red]refused:[/] {exc}")

        step("Expiry sweep: the overdue promotional lot loses exactly its remainder, once")
        for res in ledger.expire():
            out.print(f"lot {res.data['lot']} expired {res.data['amount']} CNY")
        out.print(f"second sweep expires {len(ledger.expire())} lots")

        step("Refund under a 5 % fee policy: only paid (refundable) money can go back")
        ledger.set_terms(acme, "CNY", refund_policy="fee", refund_fee_pct="5")
        r = ledger.refund(acme, "1000.00", "CNY", "demo:refund:1", memo="customer request")
        out.print(f"refund 1000.00: payout {r.data['payout']}, fee {r.data['fee']}")
        try:
            ledger.refund(acme, "4100.00", "CNY", "demo:refund:2")
        except LedgerRuleError as exc:
            out.print(f"[red]refused:[/] {exc}")

        step("A wrong consumption is corrected by a reversal; the original entry stays")
        wrong = ledger.consume(wu, "800.00", "CNY", "demo:use:2", memo="billed to the wrong customer")
        ledger.reverse(wrong.entry_ids[0], "demo:reverse:1", memo="wrong customer")

        step("Balances now, and Acme's balance as of 35 days ago")
        table = Table("customer", "currency", "balance")
        for view in ledger.accounts():
            table.add_row(view.customer, view.currency, str(view.balance))
        out.print(table)
        past = ledger.balance(acme, "CNY", as_of=now - timedelta(days=35))[0]
        out.print(f"{acme} as of {past.as_of:%Y-%m-%d}: {past.balance} CNY")

        step("verify recomputes every balance and lot from the entries")
        report = verify(ledger.engine)
        colour = "green" if report.ok else "red"
        out.print(f"[{colour}]{'consistent' if report.ok else 'INCONSISTENT'}[/]: {report.counts}")
        out.print(f"\nDemo ledger: {url}  (try: prepaid-sync --db {url} ledger history {acme})")
        if not report.ok:
            raise typer.Exit(1)


def _stepper() -> Callable[[str], None]:
    count = {"n": 0}

    def step(title: str) -> None:
        count["n"] += 1
        out.print(Panel(f"[bold]{count['n']}. {title}[/]", expand=False))

    return step


def _allocs(data: dict[str, Any]) -> None:
    for e in data["entries"]:
        moved = ", ".join(f"lot {a['lot_id']}: {a['amount']}" for a in e["allocations"])
        out.print(f"consume {e['amount']} drew {moved}")
