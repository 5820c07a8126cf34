"""`prepaid-sync ledger ...`: postings, balances, statements, import and verify.

Exit codes: 0 success (an idempotent replay too), 2 invalid input, 3 refused by a ledger rule.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from connector import visible
from connector.cli.common import database, emit_json, err, handled, out, plain, state
from connector.compliance import DepositGuard
from connector.errors import LedgerCorrupt
from connector.ledger import Ledger, PostingResult
from connector.ledger.importer import Importer
from connector.ledger.verify import verify as run_verify
from connector.timeutil import parse_date, parse_datetime

app = typer.Typer(no_args_is_help=True, help="The prepayment ledger.", rich_markup_mode=None)

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
Currency = Annotated[str, typer.Option("--currency", "-c", help="ISO 4217 currency code, e.g. CNY.")]
Key = Annotated[str, typer.Option("--key", "-k", help="Idempotency key (permanent).")]
Memo = Annotated[str, typer.Option("--memo", help="Why; shown on statements.")]
Effective = Annotated[str | None, typer.Option("--effective", help="Business time (ISO 8601); default now. "
                                               "May be backdated.")]
Source = Annotated[str | None, typer.Option("--source", help="Source reference SYSTEM:RECORD_ID.")]


def _ledger(*, write: bool = True) -> Ledger:
    """The ledger on the command's database; a command that only reads (`write=False`) never creates one."""
    return Ledger(database(write=write), deposit_guard=DepositGuard(config=state.config))


def _source(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    system, _, record = value.partition(":")
    return (system, record or "")


def _show_posting(result: PostingResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    d = result.data
    verb = "posted" if result.created else "already posted (idempotent replay, nothing written)"
    out.print(
        Text.assemble((d["op"], "bold"), f" {d.get('amount', '')} {d['currency']} for ",
                      (visible.escape(d["customer"]), "cyan"),
                      f": {verb}; balance {d['balance']} {d['currency']}"), highlight=False)
    table = Table("entry", "kind", "amount", "balance after", "lots moved")
    for e in d["entries"]:
        moved = ", ".join(
            f"{'credit line' if a['lot_id'] is None else 'lot ' + str(a['lot_id'])} {a['amount']}"
            for a in e["allocations"])
        table.add_row(str(e["id"]), e["kind"], e["amount"], e["balance_after"], moved)
    out.print(table)
    if d["op"] == "refund":
        out.print(f"payout {d['payout']}, fee {d['fee']} (policy {d['policy']})")


@app.command()
def deposit(customer: str, amount: str, currency: Currency, key: Key, expires: Annotated[
    str | None,
    typer.Option("--expires", help="Expiry: a date (usable through that "
                 "day, UTC) or a date-time.")] = None, non_refundable: Annotated[
                     bool,
                     typer.Option("--non-refundable", help="Money that may never be paid out.")] = False,
            priority: Annotated[int, typer.Option(help="Drawdown priority; lower is used first.")] = 50,
            effective: Effective = None, source: Source = None, memo: Memo = "",
            as_json: Json = False) -> None:
    """Add a lot of prepaid money for CUSTOMER."""
    with handled(as_json):
        result = _ledger().deposit(customer, amount, currency, key,
                                   expires_at=parse_datetime(expires, "expires", end_of_day=True),
                                   effective_at=parse_datetime(effective, "effective"),
                                   refundable=not non_refundable, priority=priority, source=_source(source),
                                   memo=memo)
        _show_posting(result, as_json)


@app.command()
def consume(customer: str, amount: str, currency: Currency, key: Key, effective: Effective = None,
            source: Source = None, memo: Memo = "", as_json: Json = False) -> None:
    """Draw AMOUNT down from CUSTOMER's lots (priority, soonest expiry, oldest, lot id)."""
    with handled(as_json):
        result = _ledger().consume(customer, amount, currency, key,
                                   effective_at=parse_datetime(effective, "effective"),
                                   source=_source(source), memo=memo)
        _show_posting(result, as_json)


@app.command()
def refund(customer: str, amount: str, currency: Currency, key: Key, effective: Effective = None,
           source: Source = None, memo: Memo = "", as_json: Json = False) -> None:
    """Pay AMOUNT back under CUSTOMER's refund policy (never more than is refundable)."""
    with handled(as_json):
        result = _ledger().refund(customer, amount, currency, key,
                                  effective_at=parse_datetime(effective,
                                                              "effective"), source=_source(source), memo=memo)
        _show_posting(result, as_json)


@app.command(context_settings={"ignore_unknown_options": True})
def adjust(customer: str, amount: Annotated[str, typer.Argument(help="Signed amount, e.g. -5.00.")],
           currency: Currency, key: Key, memo: Annotated[str,
                                                         typer.Option("--memo", help="Why (required).")],
           expires: Annotated[str | None,
                              typer.Option("--expires", help="Expiry of a positive adjustment.")] = None,
           refundable: Annotated[bool,
                                 typer.Option("--refundable", help="A positive adjustment that may be "
                                              "paid out.")] = False, effective: Effective = None,
           as_json: Json = False) -> None:
    """Post a signed correction with a memo."""
    with handled(as_json):
        result = _ledger().adjust(customer, amount, currency, key, memo=memo,
                                  expires_at=parse_datetime(expires, "expires", end_of_day=True),
                                  effective_at=parse_datetime(effective, "effective"), refundable=refundable)
        _show_posting(result, as_json)


@app.command()
def reverse(entry_id: int, key: Key, memo: Memo = "", effective: Effective = None,
            as_json: Json = False) -> None:
    """Reverse entry ENTRY_ID by posting its opposite (the original never changes)."""
    with handled(as_json):
        result = _ledger().reverse(entry_id, key, memo=memo,
                                   effective_at=parse_datetime(effective, "effective"))
        _show_posting(result, as_json)


@app.command()
def balance(customer: str,
            currency: Annotated[str | None,
                                typer.Option("--currency", "-c", help="Only this currency.")] = None,
            as_of: Annotated[str | None,
                             typer.Option("--as-of", help="Balance at this business time.")] = None,
            known_at: Annotated[str | None,
                                typer.Option("--known-at", help="...as recorded by this time.")] = None,
            as_json: Json = False) -> None:
    """Show CUSTOMER's balance (now, or as of a time)."""
    with handled(as_json):
        views = _ledger(write=False).balance(customer, currency,
                                             as_of=parse_datetime(as_of, "as-of", end_of_day=True),
                                             known_at=parse_datetime(known_at, "known-at", end_of_day=True))
        if as_json:
            docs = [v.to_dict() for v in views]
            emit_json(docs[0] if len(docs) == 1 else docs)
            return
        table = Table("customer", "currency", "balance", "available", "credit used", "credit limit", "as of")
        for v in views:
            table.add_row(plain(v.customer), v.currency, str(v.balance), _s(v.available), _s(v.debt),
                          _s(v.credit_limit), v.as_of.isoformat() if v.as_of else "now")
        out.print(table)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


@app.command()
def expire(as_of: Annotated[str | None,
                            typer.Option("--as-of", help="Sweep as of this time (default now).")] = None,
           as_json: Json = False) -> None:
    """Expire the remainder of every overdue lot, exactly once."""
    with handled(as_json):
        results = _ledger().expire(parse_datetime(as_of, "as-of"))
        if as_json:
            emit_json({"expired": [r.to_dict() for r in results]})
            return
        table = Table("customer", "currency", "lot", "expired", "balance after")
        for r in results:
            d = r.data
            table.add_row(plain(d["customer"]), d["currency"], str(d["lot"]), d["amount"], d["balance"])
        out.print(table if results else "nothing to expire")


@app.command()
def history(customer: str,
            currency: Annotated[str | None,
                                typer.Option("--currency", "-c", help="Only this currency.")] = None,
            start: Annotated[str | None,
                             typer.Option("--from", help="From this business time (inclusive).")] = None,
            end: Annotated[
                str | None,
                typer.Option("--to", help="To this business time (exclusive; a date "
                             "includes that day).")] = None, as_json: Json = False) -> None:
    """Statement of CUSTOMER's entries between two times, with opening and closing balances."""
    with handled(as_json):
        statements = _ledger(write=False).history(customer, currency, start=parse_datetime(start, "from"),
                                                  end=parse_datetime(end, "to", end_of_day=True))
        if as_json:
            docs = [s.to_dict() for s in statements]
            emit_json(docs[0] if len(docs) == 1 else docs)
            return
        for s in statements:
            table = Table("entry", "effective", "kind", "amount", "running", "key", "memo",
                          title=plain(f"{s.customer} {s.currency}: opening {s.opening}, closing {s.closing}"))
            for e in s.entries:
                table.add_row(str(e["id"]), e["effective_at"][:19], e["kind"], e["amount"], e["running"],
                              plain(e["key"]),
                              plain(e["memo"] + (f" (reverses {e['reverses']})" if e["reverses"] else "")))
            out.print(table)


@app.command()
def accounts(as_json: Json = False) -> None:
    """List every account with its balance."""
    with handled(as_json):
        views = _ledger(write=False).accounts()
        if as_json:
            emit_json([{k: v for k, v in view.to_dict().items() if k != "as_of"} for view in views])
            return
        table = Table("customer", "currency", "balance", "credit used", "credit limit")
        for v in views:
            table.add_row(plain(v.customer), v.currency, str(v.balance), _s(v.debt), _s(v.credit_limit))
        out.print(table)


@app.command()
def terms(customer: str, currency: Currency,
          refund_policy: Annotated[str, typer.Option(help="full, pro_rata, none or fee.")] = "full",
          fee_pct: Annotated[str,
                             typer.Option("--fee-pct", help="Refund fee percentage (policy fee).")] = "0",
          credit_limit: Annotated[str, typer.Option(help="Credit line below zero.")] = "0",
          low_balance: Annotated[str | None, typer.Option(help="Low-balance threshold.")] = None,
          agreed_amount: Annotated[str | None, typer.Option(help="Agreed prepayment amount.")] = None,
          due_date: Annotated[str | None, typer.Option(help="Prepayment due date.")] = None,
          valid_from: Annotated[str | None, typer.Option(help="Validity start date.")] = None,
          valid_until: Annotated[str | None, typer.Option(help="Validity end date.")] = None,
          contract: Annotated[str, typer.Option(help="Contract reference ('' = customer level).")] = "",
          as_json: Json = False) -> None:
    """Set the prepayment terms of CUSTOMER (or one of its contracts)."""
    with handled(as_json):
        data = _ledger().set_terms(customer, currency, contract_ref=contract, agreed_amount=agreed_amount,
                                   due_date=parse_date(due_date, "due-date"),
                                   valid_from=parse_date(valid_from, "valid-from"),
                                   valid_until=parse_date(valid_until, "valid-until"),
                                   refund_policy=refund_policy, refund_fee_pct=fee_pct,
                                   credit_limit=credit_limit, low_balance_threshold=low_balance)
        if as_json:
            emit_json(data)
        else:
            table = Table("term", "value")
            for k, v in data.items():
                table.add_row(k, plain(v))
            out.print(table)


@app.command("import")
def import_csv(file: Annotated[Path,
                               typer.Argument(exists=True, dir_okay=False, help="CSV file of postings.")],
               dry_run: Annotated[bool,
                                  typer.Option("--dry-run", help="Check everything, write nothing.")] = False,
               as_json: Json = False) -> None:
    """Import postings from a CSV file: all rows or none."""
    with handled(as_json):
        engine = _ledger(write=not dry_run).engine  # a dry run only reads
        report = Importer(engine, deposit_guard=DepositGuard(config=state.config)).run(file, dry_run=dry_run)
        if as_json:
            emit_json(report.to_dict())
        else:
            for e in report.errors:
                err.print(plain(f"{file} {e}"), style="red", highlight=False, soft_wrap=True)
            state_word = "applied" if report.applied else ("checked (dry run)" if not report.errors else
                                                          "NOT applied: nothing was changed")
            out.print(
                f"{report.rows} rows: {report.created} new, {report.exists} already posted; {state_word}")
        if report.errors:
            raise typer.Exit(report.exit_code)


@app.command()
def entry(entry_id: int, as_json: Json = False) -> None:
    """Show one entry and the lots it moved."""
    with handled(as_json):
        data = _ledger(write=False).entry(entry_id)
        if as_json:
            emit_json(data)
        else:
            table = Table("field", "value")
            for k, v in data.items():
                table.add_row(k, plain(v))
            out.print(table)


@app.command()
def verify(as_json: Json = False) -> None:
    """Recompute every balance and lot remainder from entries; exit 1 on any inconsistency."""
    with handled(as_json):
        started = datetime.now()
        report = run_verify(_ledger(write=False).engine)
        seconds = (datetime.now() - started).total_seconds()
        if as_json:
            emit_json({**report.to_dict(), "seconds": round(seconds, 3)})
        else:
            counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
            if report.ok:
                out.print(f"[green]ledger consistent[/]: {counts} ({seconds:.2f}s)")
            for p in report.problems:
                err.print(Text.assemble((p["check"], "red"), ": ", plain(p)), highlight=False, soft_wrap=True)
        if not report.ok:
            err.print(f"[bold red]verify found {len(report.problems)} inconsistencies[/]")
            raise typer.Exit(LedgerCorrupt.exit_code)
