"""`prepaid-sync demo`: a sandbox CRM on a free local port, a full sync, a few user edits, an incremental
sync."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.cli.common import emit_json, handled, out
from connector.cli.sync_cmd import engine_for, print_report, write_config
from connector.config import load_settings
from connector.db.engine import make_engine
from connector.sync.context import RunReport


def _zoho(n: int) -> tuple[Any, str, Callable[[], dict[str, str]]]:
    from connector.adapters.zoho.sandbox import ZohoSandbox

    sb = ZohoSandbox(seed=n).start()
    org = sb.org

    def act() -> dict[str, str]:
        accounts, pays = org.modules["Accounts"], org.modules["Prepaid_Payments"]
        live = [r for r in pays.records.values() if (r.get("Account") or {}).get("id") in accounts.records
                and r.get("Currency")]
        first, second = live[0], live[1]
        acc = first["Account"]
        new = org.insert(pays, {"Name": "PAY-DEMO-NEW", "Account": acc, "Amount": Decimal("250.00"),
                                "Currency": first["Currency"], "Payment_Date": date.today().isoformat(),
                                "Payment_Status": "Received", "Payment_Method": "Card"})
        org.update(pays, second["id"], {"Amount": Decimal(str(second["Amount"])) + Decimal("100.00")})
        victim = second["Account"]["id"]
        org.update(accounts, victim, {"Prepaid_Balance": Decimal("999999.00")})
        return {"new payment": f"{new['id']} (250.00 {first['Currency']} for account {acc['id']})",
                "edited payment": f"{second['id']} (+100.00)",
                "hand-edited balance": f"account {victim} Prepaid_Balance -> 999999.00"}

    return sb, sb.api_domain, act


def _fxiaoke(n: int) -> tuple[Any, str, Callable[[], dict[str, str]]]:
    from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox, SandboxConfig

    sb = FxiaokeSandbox(config=SandboxConfig(seed=n)).start()
    store = sb.app.store
    admin = sb.app.credentials.open_user_id

    def act() -> dict[str, str]:
        accounts = store.table("AccountObj").rows
        pays = [
            r for r in store.table("PaymentObj").rows.values() if r.get("account_id") in accounts and
            r.get("life_status") == "normal" and not str(r.get("payment_amount", "")).startswith(("-", "0"))
        ]
        first, second = pays[0], pays[1]
        new = store.create(
            "PaymentObj", {
                "account_id": first["account_id"], "payment_amount": "250.00", "payment_time": int(
                    time.time() * 1000), "owner": first.get("owner")
            }, admin)
        store.update("PaymentObj", second["_id"],
                     {"payment_amount": str(Decimal(second["payment_amount"]) + 100)}, admin)
        victim = second["account_id"]
        store.update("AccountObj", victim, {"prepaid_balance__c": "999999.00"}, admin)
        return {"new payment": f"{new['_id']} (250.00 CNY)", "edited payment": f"{second['_id']} (+100.00)",
                "hand-edited balance": f"customer {victim} prepaid_balance__c -> 999999.00"}

    return sb, sb.base_url, act


def demo(crm: Annotated[str, typer.Option("--crm", help="zoho or fxiaoke")] = "zoho",
         customers: Annotated[int, typer.Option("--customers", min=5, max=5000, help="Sandbox size.")] = 60,
         as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
    """Sync a sandbox CRM end to end (offline, SQLite): full sync, user edits, incremental sync."""
    with handled(as_json):
        if crm not in ("zoho", "fxiaoke"):
            from connector.errors import ConfigError

            raise ConfigError(f"--crm must be zoho or fxiaoke, not {crm!r}", field="crm")
        started = time.monotonic()
        sandbox, url, act = (_zoho if crm == "zoho" else _fxiaoke)(customers)
        try:
            with tempfile.TemporaryDirectory(prefix="prepaid-sync-demo-") as tmp:
                write_config(Path(tmp), crm, sandbox=url)
                # The demo's own database, whatever --db, $PREPAID_SYNC_DB or a config file may say.
                engine, _name = engine_for(load_settings(Path(tmp) / "prepaid-sync.toml"), None,
                                           make_engine(f"sqlite:///{Path(tmp) / 'prepaid-sync.db'}"))
                first = engine.run()
                edits = act()
                time.sleep(1.1)  # CRM modified times have one-second resolution
                second = engine.run(changes=True)  # its changes are explained below
                again = engine.run()
                engine.adapter.close()
                engine.engine.dispose()
        finally:
            sandbox.stop()
    elapsed = round(time.monotonic() - started, 1)
    if as_json:
        emit_json({"crm": crm, "seconds": elapsed, "full_sync": first.to_dict(), "edits": edits,
                   "incremental_sync": second.to_dict(), "quiet_run": again.to_dict()})
        return
    out.rule(f"prepaid-sync demo: {crm} sandbox with {customers} customers")
    out.print("1. First full sync: every CRM payment becomes one ledger deposit; balances, tiers and flags "
              "are written back.")
    print_report(first, title="full sync")
    out.print("\n2. Meanwhile in the CRM, people:")
    for what, detail in edits.items():
        out.print(f"   - {what}: {detail}", highlight=False)
    out.print("\n3. Incremental sync: only what changed is pulled, posted and written.")
    print_report(second, title="incremental sync")
    _explain(second)
    out.print("\n4. A run right after with no CRM changes:")
    out.print(f"   records written {again.records_written}, tasks created {again.tasks_created}, "
              f"deposits {again.deposits_posted} (our own writes come back as echoes and are ignored)")
    out.print(
        f"\nDone in {elapsed}s. Try it yourself: `prepaid-sync sandbox serve --crm {crm} --seed 100`, then "
        "`prepaid-sync init --sandbox URL` with the URL it prints.")


def _explain(report: RunReport) -> None:
    for key, change in report.changes.items():
        lines = [f"ledger: {p}" for p in change["postings"]]
        lines += [f"field {f}: {d}" for f, d in change["fields"].items()]
        lines += [f"task opened: {t}" for t in change["tasks_open"]]
        lines += [f"task closed: {t}" for t in change["tasks_close"]]
        if lines:
            out.print(f"   [bold]{key}[/]")
            for line in lines:
                out.print(f"     {line}", highlight=False)
