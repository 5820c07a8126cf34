"""The ledger's posting API: every posting is one transaction, serialized per customer.

Idempotency is permanent: a key used before with the same payload returns the stored result
(`status="exists"`) and writes nothing; with a different payload it is refused. There is one
posting path: `post` is `post_batch([request])`. Reads live in `queries.LedgerQueries` and
contract terms in `terms.TermsBook`; a `Ledger` answers both through them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import IntegrityError

from connector import testpoints, visible
from connector.db.engine import make_engine, write_transaction
from connector.errors import ConnectorError, CurrencyMismatch, IdempotencyConflict, NotFound
from connector.ledger import store
from connector.ledger.plan import payload_hash
from connector.ledger.group import GroupCommitter
from connector.ledger.planners import (Request, as_utc, check_entry_id, make_request, plan, plan_expiry,
                                       plan_reversal, posting_key)
from connector.ledger.queries import BalanceView, LedgerQueries, Statement
from connector.ledger.rules import AccountState
from connector.ledger.terms import TermsBook, TermsHook
from connector.ledger.writer import PlanWriter, rebuild_result
from connector.money import fmt
from connector.timeutil import utcnow

States = dict[tuple[str, str], AccountState]
Policies = dict[tuple[str, str], tuple[str, Decimal]]


@dataclass(frozen=True)
class PostingResult:
    """Outcome of one posting: `created` the first time, `exists` on an idempotent replay."""

    status: str
    data: dict[str, Any]

    @property
    def created(self) -> bool:
        """True when this call wrote the posting."""
        return self.status == "created"

    @property
    def balance(self) -> Decimal:
        """The account balance right after this posting."""
        return Decimal(self.data["balance"])

    @property
    def entry_ids(self) -> list[int]:
        """Ids of the entries this posting wrote."""
        return [e["id"] for e in self.data["entries"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the stored result plus `status`."""
        return {"status": self.status, **self.data}


@dataclass(frozen=True)
class BatchOutcome:
    """One request's outcome in `Ledger.post_batch`: created, exists (the stored result) or refused."""

    request: Request
    result: PostingResult | None = None
    error: ConnectorError | None = None

    @property
    def status(self) -> str:
        """`created`, `exists` or `refused`."""
        return self.result.status if self.result is not None else "refused"


BatchHook = Callable[[Connection, list[BatchOutcome]], None]


class Ledger:
    """Deposits, consumption, refunds, adjustments, reversals and expiry over one database."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow,
                 deposit_guard: Callable[[Request], None] | None = None, *,
                 group_commit: bool = False) -> None:
        self.engine = engine
        self.clock = clock
        self.deposit_guard = deposit_guard  # may refuse new deposits (compliance stop switch) by raising
        self.queries = LedgerQueries(engine, clock)
        self.terms = TermsBook(engine, clock)
        # Concurrent `post` calls (threads of one process) share transactions; see group.py.
        self.group = GroupCommitter(self._post_group, self._post_one) if group_commit else None

    @classmethod
    def open(cls, url: str | None = None, **kw: Any) -> Ledger:
        """A ledger on `url` (see `db.resolve_url`), schema upgraded if needed."""
        return cls(make_engine(url), **kw)

    # -- postings ---------------------------------------------------------------------------

    def deposit(self, customer: str, amount: object, currency: str, key: str, *,
                effective_at: datetime | None = None, expires_at: datetime | None = None,
                refundable: bool = True, priority: int = 50, source: tuple[str, str] | None = None,
                memo: str = "") -> PostingResult:
        """Add a lot of prepaid money."""
        return self.post(make_request("deposit", customer, amount, currency, key, effective_at=effective_at,
                                      expires_at=expires_at, refundable=refundable, priority=priority,
                                      source=source, memo=memo))

    def consume(self, customer: str, amount: object, currency: str, key: str, *,
                effective_at: datetime | None = None, source: tuple[str, str] | None = None,
                memo: str = "") -> PostingResult:
        """Draw money down in lot order; refused below minus the credit limit."""
        return self.post(make_request("consume", customer, amount, currency, key, effective_at=effective_at,
                                      source=source, memo=memo))

    def refund(self, customer: str, amount: object, currency: str, key: str, *,
               effective_at: datetime | None = None, source: tuple[str, str] | None = None,
               memo: str = "") -> PostingResult:
        """Pay money back under the customer's refund policy; never more than is refundable."""
        return self.post(make_request("refund", customer, amount, currency, key, effective_at=effective_at,
                                      source=source, memo=memo))

    def adjust(self, customer: str, amount: object, currency: str, key: str, *, memo: str,
               effective_at: datetime | None = None, expires_at: datetime | None = None,
               refundable: bool = False, source: tuple[str, str] | None = None) -> PostingResult:
        """A signed correction with a required memo (positive: a new lot, non-refundable by default)."""
        return self.post(make_request("adjust", customer, amount, currency, key, effective_at=effective_at,
                                      expires_at=expires_at, refundable=refundable, source=source, memo=memo))

    def post(self, req: Request) -> PostingResult:
        """Run one validated request in its own transaction: `post_batch([req])`, its refusal raised.

        With `group_commit`, concurrent calls share a transaction (`GroupCommitter`): the same answers
        and refusals, each durable before it returns.
        """
        if self.group is not None:
            return self.group.post(req)
        return self._post_one(req)

    def _post_one(self, req: Request) -> PostingResult:
        result = self.post_batch([req], hook=_raise_refusal)[0].result
        assert result is not None
        return result

    def _post_group(self, reqs: Sequence[Request]) -> list[BatchOutcome]:
        return self.post_batch(reqs, hook=_drop_refused_accounts)

    def post_batch(self, requests: Sequence[Request], *, hook: BatchHook | None = None) -> list[BatchOutcome]:
        """Run many validated requests, in order, in ONE transaction; one outcome per request.

        Each request gets what `post` would answer had the requests been posted one after another:
        `created`, `exists` (the stored result; a key repeated in the batch answers like a replay)
        or refused (the `LedgerRuleError`, `IdempotencyConflict`, `InvalidInput` or deposit-guard
        error `post` would raise). A refused request writes nothing and does not stop the others.
        Accounts are created and locked up front, in a fixed order. `hook(conn, outcomes)` runs in
        the same transaction (so callers commit their own state with the postings); if it raises,
        nothing is written.
        """
        reqs = list(requests)
        if not reqs:
            return []
        for attempt in range(3):
            try:
                with write_transaction(self.engine) as conn:
                    outcomes = self._batch(conn, reqs)
                    if hook is not None:
                        hook(conn, outcomes)
                    testpoints.reach("ledger.batch_written")
                testpoints.reach("ledger.batch_committed")
                return outcomes
            except IntegrityError:
                # Lost a race on a key to a concurrent transaction: the batch is rolled back whole;
                # run it again, when that key now answers as a replay (or a conflict).
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _batch(self, conn: Connection, reqs: list[Request]) -> list[BatchOutcome]:
        now = self.clock()
        states, policies = _lock(conn, reqs, now)
        writer = PlanWriter(conn, now, batch_hint=len(reqs))
        outcomes = self.apply_requests(conn, reqs, states, policies, writer, now)
        writer.flush()
        return outcomes

    def apply_requests(self, conn: Connection, reqs: list[Request], states: States, policies: Policies,
                       writer: PlanWriter, now: datetime, *,
                       results: bool = True) -> list[BatchOutcome]:
        """The core of `post_batch` and the CSV import: plan each request on locked `states` and buffer it.

        Accounts must already be locked (`store.lock_accounts`); the caller flushes `writer`. With
        `results=False` (bulk import) no result documents are built: a replay is only checked
        against its payload hash and answers `exists` with an empty document.
        """
        seen = store.find_postings(conn, {r.key for r in reqs})
        local: dict[str, tuple[str, dict[str, Any] | None]] = {}  # keys created here: hash, result
        outcomes: list[BatchOutcome] = []
        for req in reqs:
            digest = req.hash()
            try:
                if req.key in local or req.key in seen:
                    if req.key in local:
                        prior, data = local[req.key]
                        if prior != digest:
                            raise _conflict(req.key, req.op, req.customer, req.currency, _asked(req))
                        answer = PostingResult("exists", copy.deepcopy(data) if data else {})
                    elif results:
                        answer = _replayed(conn, seen[req.key], req.key, digest, _asked(req))
                    elif seen[req.key].payload_hash != digest:
                        row = seen[req.key]
                        raise _conflict(req.key, row.op, row.customer_key, row.currency, _asked(req))
                    else:
                        answer = PostingResult("exists", {})
                    outcomes.append(BatchOutcome(req, answer))
                    continue
                state = states[(req.customer, req.currency)]
                self._admit(conn, state, req, states)
                policy, pct = policies.get((req.customer, req.currency), ("full", Decimal(0)))
                p = plan(state, req, now, refund_policy=policy, refund_fee_pct=pct, digest=digest)
            except ConnectorError as exc:
                outcomes.append(BatchOutcome(req, error=exc))
                continue
            data = writer.apply(p, want_result=results)
            local[req.key] = (digest, data)
            outcomes.append(BatchOutcome(req, PostingResult("created", data or {})))
        return outcomes

    def reverse(self, entry_id: int, key: str, *, memo: str = "",
                effective_at: datetime | None = None) -> PostingResult:
        """Post the exact opposite of an entry; the original never changes."""
        key = posting_key(key)
        memo = visible.check((memo or "").strip(), "memo", memo=True)
        check_entry_id(entry_id)
        eff = as_utc(effective_at, "effective_at")
        digest = payload_hash("reverse", {"entry_id": entry_id, "effective_at": eff})
        try:
            with write_transaction(self.engine) as conn:
                now = self.clock()
                row = store.load_entry(conn, entry_id)
                if row is None:
                    raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
                state = store.lock_account_by_id(conn, row.account_id, now)
                existing = store.find_posting(conn, key)
                if existing is not None:
                    return _replayed(conn, existing, key, digest)
                p = plan_reversal(state, store.entry_state(conn, row, state), key, digest, memo, eff or now)
                writer = PlanWriter(conn, now)
                data = writer.apply(p)
                writer.flush()
                assert data is not None
                return PostingResult("created", data)
        except IntegrityError:
            # Lost a race on the same key from another account's transaction: answer as a replay.
            with self.engine.connect() as conn:
                existing = store.find_posting(conn, key)
                if existing is None:
                    raise
                return _replayed(conn, existing, key, digest)

    def expire(self, as_of: datetime | None = None) -> list[PostingResult]:
        """Expire exactly the remainder of every lot overdue at `as_of`; a second sweep writes nothing."""
        cutoff = as_utc(as_of, "as_of") or self.clock()
        with self.engine.connect() as conn:
            due = conn.execute(
                select(store.accounts.c.customer_key, store.accounts.c.currency).distinct()
                .join(store.lots, store.lots.c.account_id == store.accounts.c.id)
                .where(store.lots.c.remaining > 0, store.lots.c.expires_at <= cutoff)).all()
        results: list[PostingResult] = []
        for customer, currency in due:
            with write_transaction(self.engine) as conn:
                now = self.clock()
                state = store.lock_account(conn, customer, currency, now, create=False)
                assert state is not None
                writer = PlanWriter(conn, now)
                for lot in sorted(state.lots, key=lambda lot: lot.id):
                    if lot.expires_at is None or lot.expires_at > cutoff or lot.remaining <= 0:
                        continue
                    data = writer.apply(plan_expiry(state, lot))
                    assert data is not None
                    results.append(PostingResult("created", data))
                writer.flush()
        return results

    def _admit(self, conn: Connection, state: AccountState, req: Request,
               pending: States | None = None) -> None:
        """Checks a new posting passes before it is planned: the deposit guard, currencies never mixing."""
        if req.op == "deposit" and self.deposit_guard is not None:
            self.deposit_guard(req)
        if req.op in ("consume", "refund") or (req.op == "adjust" and req.amount < 0):
            _check_currency(conn, state, req, pending)

    # -- reads and terms: answered by `queries` and `terms`, kept here for callers ----------

    def balance(self, customer: str, currency: str | None = None, *, as_of: datetime | None = None,
                known_at: datetime | None = None) -> list[BalanceView]:
        """`LedgerQueries.balance`: balances of a customer, now or as of a time."""
        return self.queries.balance(customer, currency, as_of=as_of, known_at=known_at)

    def balances_with_prefix(self, prefix: str) -> dict[tuple[str, str], BalanceView]:
        """`LedgerQueries.balances_with_prefix`: current balances of the customers keyed `prefix...`."""
        return self.queries.balances_with_prefix(prefix)

    def accounts(self, *, batch: int = 5000) -> Iterator[BalanceView]:
        """`LedgerQueries.accounts`: every account with its balance, streamed in customer order."""
        return self.queries.accounts(batch=batch)

    def history(self, customer: str, currency: str | None = None, *, start: datetime | None = None,
                end: datetime | None = None) -> list[Statement]:
        """`LedgerQueries.history`: statements per currency between two times."""
        return self.queries.history(customer, currency, start=start, end=end)

    def entry(self, entry_id: int) -> dict[str, Any]:
        """`LedgerQueries.entry`: one entry with its allocations."""
        return self.queries.entry(entry_id)

    def set_terms(self, customer: str, currency: str, *, contract_ref: str = "", agreed_amount: object = None,
                  due_date: date | None = None, valid_from: date | None = None,
                  valid_until: date | None = None, refund_policy: str = "full", refund_fee_pct: object = 0,
                  credit_limit: object = 0, low_balance_threshold: object = None,
                  active: bool = True) -> dict[str, Any]:
        """`TermsBook.set_terms`: create or replace the terms of a customer or of one of its contracts."""
        return self.terms.set_terms(customer, currency, contract_ref=contract_ref,
                                    agreed_amount=agreed_amount, due_date=due_date, valid_from=valid_from,
                                    valid_until=valid_until, refund_policy=refund_policy,
                                    refund_fee_pct=refund_fee_pct, credit_limit=credit_limit,
                                    low_balance_threshold=low_balance_threshold, active=active)

    def set_terms_many(self, items: Sequence[dict[str, Any]], *,
                       hook: TermsHook | None = None) -> list[ConnectorError | None]:
        """`TermsBook.set_terms_many`: many terms in one transaction, per item None or the refusal."""
        return self.terms.set_terms_many(items, hook=hook)

    def get_terms(self, customer: str, currency: str, contract_ref: str = "") -> dict[str, Any] | None:
        """`TermsBook.get_terms`: terms as JSON-friendly data, or None."""
        return self.terms.get_terms(customer, currency, contract_ref)


def _lock(conn: Connection, reqs: list[Request], now: datetime) -> tuple[States, Policies]:
    """Create and lock the batch's accounts and load their open lots (and refund policies)."""
    policies: Policies = {}
    if len(reqs) > 1:
        pairs = {(r.customer, r.currency) for r in reqs}
        return store.lock_accounts(conn, pairs, now, policies=policies), policies
    # One posting (every `post`): on PostgreSQL its lots, stored posting and new ids come in one round trip.
    req = reqs[0]
    pair = (req.customer, req.currency)
    state = store.lock_account(conn, req.customer, req.currency, now, key=req.key)
    assert state is not None
    if req.op == "refund":
        store.load_refund_policies(conn, {pair}, policies)
    return {pair: state}, policies


def _drop_refused_accounts(conn: Connection, outcomes: list[BatchOutcome]) -> None:
    """A group's hook: accounts this transaction created only for refused requests go again.

    `post` rolls a refused request back whole; a group commits the others, so it removes the empty
    account rows its refusals made, and the database ends as if each had been posted alone."""
    created = conn.info.pop("created_accounts", None)
    if not created:
        return
    used = {(o.request.customer, o.request.currency) for o in outcomes if o.status == "created"}
    for customer, currency in sorted(created - used):
        conn.execute(delete(store.accounts).where(store.accounts.c.customer_key == customer,
                                                  store.accounts.c.currency == currency))


def _raise_refusal(conn: Connection, outcomes: list[BatchOutcome]) -> None:
    """`post`'s hook: a refusal is raised inside the transaction, so nothing it touched (an account) stays."""
    if outcomes[0].error is not None:
        raise outcomes[0].error


def _check_currency(conn: Connection, state: AccountState, req: Request,
                    pending: States | None = None) -> None:
    """Refuse money out of an empty account while the customer holds money in another currency."""
    if state.balance > 0 or state.credit_limit > 0:
        return
    found = set(conn.execute(select(store.accounts.c.currency).where(
        store.accounts.c.customer_key == req.customer, store.accounts.c.currency != req.currency,
        store.accounts.c.balance > 0)).scalars().all())
    for (customer, cur), other in (pending or {}).items():  # a batch's balances not yet written
        if customer == req.customer and cur != req.currency:
            if other.balance > 0:
                found.add(cur)
            else:
                found.discard(cur)
    others = sorted(found)
    if others:
        raise CurrencyMismatch(
            f"{req.op} of {fmt(req.amount, req.currency)} {req.currency} for customer {req.customer} "
            f"refused: the customer holds {', '.join(others)}, not {req.currency}; currencies never mix",
            customer=req.customer, currency=req.currency)


def _conflict(key: str, op: str, customer: str, currency: str, asked: str) -> IdempotencyConflict:
    """The refusal of a key already used, by this batch or before, with another payload."""
    return IdempotencyConflict(
        f"{asked + ' refused: ' if asked else ''}idempotency key {key!r} was already used for a different "
        f"{op} (customer {customer}, {currency}); nothing was written", key=key, customer=customer)


def _asked(req: Request) -> str:
    """The request in words, for refusals: `consume of 5.00 CNY for customer c1`."""
    return f"{req.op} of {fmt(abs(req.amount), req.currency)} {req.currency} for customer {req.customer}"


def _replayed(conn: Connection, row: Any, key: str, digest: str, asked: str = "") -> PostingResult:
    """The stored result of the posting `row` under `key`; an `IdempotencyConflict` if it asked for more."""
    if row.payload_hash != digest:
        raise _conflict(key, row.op, row.customer_key, row.currency, asked)
    return PostingResult("exists", rebuild_result(conn, row))
