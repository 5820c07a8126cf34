"""`Ledger.post_batch` and `Ledger.set_terms_many` on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, text

from connector import testpoints
from connector.errors import (CurrencyMismatch, IdempotencyConflict, InsufficientBalance, InvalidInput,
                              NotFound)
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.ledger.planners import make_request
from connector.ledger.service import BatchOutcome
from connector.ledger.verify import verify

C = "zoho:Accounts:4876876000000123"
D = "zoho:Accounts:4876876000000456"


def bal(ledger: Ledger, customer: str = C, currency: str = "CNY") -> Decimal:
    return ledger.balance(customer, currency)[0].balance


def statuses(outcomes: list[BatchOutcome]) -> list[str]:
    return [o.status for o in outcomes]


def test_mixed_created_exists_refused_in_one_batch(ledger: Ledger) -> None:
    old = ledger.deposit(C, "100.00", "CNY", "pay-old")
    out = ledger.post_batch([
        make_request("deposit", C, "100.00", "CNY", "pay-old"),       # replay
        make_request("deposit", D, "50.00", "CNY", "pay-d"),          # created (new account)
        make_request("consume", D, "80.00", "CNY", "use-too-much"),   # refused: only 50 there
        make_request("consume", C, "30.00", "CNY", "use-c"),          # created
        make_request("deposit", C, "1.00", "CNY", "pay-old"),         # refused: conflict
        make_request("consume", D, "20.00", "CNY", "use-d"),          # created: sees the batch's deposit
    ])
    assert statuses(out) == ["exists", "created", "refused", "created", "refused", "created"]
    assert out[0].result is not None and out[0].result.data == old.data
    assert isinstance(out[2].error, InsufficientBalance)
    assert isinstance(out[4].error, IdempotencyConflict)
    assert (bal(ledger, C), bal(ledger, D)) == (Decimal("70.00"), Decimal("30.00"))
    report = verify(ledger.engine)
    assert report.ok, report
    assert report.counts["entries"] == 4
    # The refused keys were not used: they can still be posted.
    assert ledger.consume(D, "10.00", "CNY", "use-too-much").created


def test_same_key_twice_in_one_batch(ledger: Ledger) -> None:
    out = ledger.post_batch([make_request("deposit", C, "10.00", "CNY", "k"),
                             make_request("deposit", C, "10.00", "CNY", "k"),
                             make_request("deposit", C, "11.00", "CNY", "k")])
    assert statuses(out) == ["created", "exists", "refused"]
    assert out[0].result is not None and out[1].result is not None
    assert out[1].result.data == out[0].result.data
    assert isinstance(out[2].error, IdempotencyConflict)
    assert bal(ledger) == Decimal("10.00")
    again = ledger.deposit(C, "10.00", "CNY", "k")
    assert again.status == "exists" and again.data == out[0].result.data


def test_results_equal_single_postings(db_url: str, clock: object) -> None:
    """The same requests give the same result documents one by one and as one batch."""
    reqs = [make_request("deposit", C, "100.00", "CNY", "p1"),
            make_request("deposit", C, "40.00", "CNY", "p2", priority=10),
            make_request("consume", C, "120.00", "CNY", "u1"),
            make_request("refund", C, "5.00", "CNY", "r1"),
            make_request("adjust", C, "-3.00", "CNY", "a1", memo="fix"),
            make_request("deposit", D, "7.00", "USD", "p3")]
    docs = []
    for batch in (False, True):
        engine = make_engine(db_url)
        try:
            if db_url.startswith("postgresql"):
                with engine.begin() as conn:  # a fresh schema per round: same ids both times
                    conn.execute(text("TRUNCATE allocations, lots, entries, postings, terms, accounts "
                                      "RESTART IDENTITY CASCADE"))
            ledger = Ledger(engine, clock=clock)  # type: ignore[arg-type]
            ledger.set_terms(C, "CNY", refund_policy="fee", refund_fee_pct="10")
            if batch:
                out = ledger.post_batch(reqs)
                assert statuses(out) == ["created"] * len(reqs)
                docs.append([o.result.data for o in out if o.result is not None])
            else:
                docs.append([ledger.post(r).data for r in reqs])
            replays = [ledger.post(r) for r in reqs]
            assert [r.data for r in replays] == docs[-1]
        finally:
            engine.dispose()
        if db_url.startswith("sqlite"):
            db_url = db_url.replace("ledger.db", "ledger-batch.db")  # a fresh file for the second round
    assert _ranked(docs[0]) == _ranked(docs[1])
    if db_url.startswith("sqlite"):
        assert docs[0] == docs[1]  # ids too (PostgreSQL sequences may leave gaps)


def _ranked(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Result documents with entry and lot ids replaced by their rank (ids from sequences may have gaps)."""
    entry_ids = sorted(e["id"] for d in docs for e in d["entries"])
    lot_ids = sorted(
        {a["lot_id"]
         for d in docs
         for e in d["entries"]
         for a in e["allocations"] if a["lot_id"]})
    out = copy.deepcopy(docs)
    for d in out:
        for e in d["entries"]:
            e["id"] = entry_ids.index(e["id"])
            if "lot_id" in e:
                e["lot_id"] = lot_ids.index(e["lot_id"])
            for a in e["allocations"]:
                if a["lot_id"]:
                    a["lot_id"] = lot_ids.index(a["lot_id"])
    return out


def test_credit_line_in_a_batch(ledger: Ledger) -> None:
    ledger.set_terms(C, "CNY", credit_limit="30")
    out = ledger.post_batch([make_request("consume", C, "25.00", "CNY", "u1"),
                             make_request("consume", C, "10.00", "CNY", "u2"),   # past the limit
                             make_request("deposit", C, "40.00", "CNY", "p1"),   # repays the 25 first
                             make_request("consume", C, "45.00", "CNY", "u3")])  # 15 + 30 of credit
    assert statuses(out) == ["created", "refused", "created", "created"]
    assert isinstance(out[1].error, InsufficientBalance)
    view = ledger.balance(C, "CNY")[0]
    assert (view.balance, view.debt) == (Decimal("-30.00"), Decimal("30.00"))
    assert verify(ledger.engine).ok


def test_currency_mismatch_sees_the_batch(ledger: Ledger) -> None:
    out = ledger.post_batch([make_request("deposit", C, "10.00", "USD", "p1"),
                             make_request("consume", C, "1.00", "EUR", "u1")])
    assert statuses(out) == ["created", "refused"]
    assert isinstance(out[1].error, CurrencyMismatch)


def test_deposit_guard_refuses_deposits_only(db_url: str, clock: object) -> None:
    def stop(req: object) -> None:
        raise InvalidInput("prepayments are stopped", field="op")

    engine = make_engine(db_url)
    try:
        open_ledger = Ledger(engine, clock=clock)  # type: ignore[arg-type]
        open_ledger.deposit(C, "10.00", "CNY", "before")
        guarded = Ledger(engine, clock=clock, deposit_guard=stop)  # type: ignore[arg-type]
        out = guarded.post_batch([make_request("deposit", C, "10.00", "CNY", "before"),  # replay answers
                                  make_request("deposit", C, "5.00", "CNY", "new"),
                                  make_request("consume", C, "4.00", "CNY", "use")])
        assert statuses(out) == ["exists", "refused", "created"]
        assert bal(guarded) == Decimal("6.00")
    finally:
        engine.dispose()


def test_hook_commits_with_the_batch_and_a_failing_hook_writes_nothing(ledger: Ledger) -> None:
    seen: list[list[str]] = []

    def hook(conn: Connection, outcomes: list[BatchOutcome]) -> None:
        seen.append(statuses(outcomes))

    ledger.post_batch([make_request("deposit", C, "10.00", "CNY", "p1")], hook=hook)
    assert seen == [["created"]]

    def boom(conn: Connection, outcomes: list[BatchOutcome]) -> None:
        raise RuntimeError("caller state failed")

    with pytest.raises(RuntimeError):
        ledger.post_batch([make_request("deposit", C, "5.00", "CNY", "p2")], hook=boom)
    assert bal(ledger) == Decimal("10.00")
    assert ledger.post_batch([]) == []


def test_post_is_a_batch_of_one(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """`post` runs through `post_batch`, kill points included, and answers and refuses as it always did."""
    reached: list[str] = []
    monkeypatch.setattr(testpoints, "reach", reached.append)
    first = ledger.deposit(C, "10.00", "CNY", "p1")
    assert first.status == "created" and reached == ["ledger.batch_written", "ledger.batch_committed"]
    again = ledger.deposit(C, "10.00", "CNY", "p1")
    assert again.status == "exists" and again.data == first.data
    with pytest.raises(
            IdempotencyConflict, match=r"^deposit of 11\.00 CNY for customer .* refused: idempotency "
            r"key 'p1' was already used for a different deposit"):
        ledger.deposit(C, "11.00", "CNY", "p1")
    ledger.set_terms(C, "CNY", refund_policy="fee", refund_fee_pct="10")
    refund = ledger.refund(C, "5.00", "CNY", "r1")  # a batch of one still reads the customer's refund policy
    assert (refund.data["policy"], refund.data["fee"]) == ("fee", "0.50")


def test_a_refused_post_leaves_no_account_behind(ledger: Ledger) -> None:
    with pytest.raises(InsufficientBalance):
        ledger.consume(D, "1.00", "CNY", "use-nothing")
    with pytest.raises(NotFound, match="has no ledger account"):
        ledger.balance(D)
    assert verify(ledger.engine).counts["postings"] == 0


def test_set_terms_many_writes_in_order_and_skips_invalid(ledger: Ledger) -> None:
    out = ledger.set_terms_many([
        {"customer": C, "currency": "CNY", "contract_ref": "deal-1", "agreed_amount": "100"},
        {"customer": C, "currency": "CNY", "credit_limit": "10"},
        {"customer": C, "currency": "CNY", "refund_policy": "bogus"},
        {"customer": C, "currency": "CNY", "credit_limit": "20", "refund_policy": "none"},  # later wins
    ])
    assert [type(e).__name__ if e else None for e in out] == [None, None, "InvalidInput", None]
    terms = ledger.get_terms(C, "CNY")
    assert terms is not None and (terms["credit_limit"], terms["refund_policy"]) == ("20.00", "none")
    deal = ledger.get_terms(C, "CNY", "deal-1")
    assert deal is not None and deal["agreed_amount"] == "100.00"
    assert ledger.balance(C, "CNY")[0].credit_limit == Decimal("20.00")
    single = ledger.set_terms(D, "CNY", credit_limit="20", refund_policy="none")
    assert {k: v for k, v in single.items() if k not in ("customer_key", "updated_at")} == \
        {k: v for k, v in terms.items() if k not in ("customer_key", "updated_at")}
