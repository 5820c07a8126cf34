"""The ledger's Python API: every operation is one transaction, serialized per customer.

Idempotency is permanent: a key used before with the same payload returns the stored result
(`status="exists"`) and writes nothing; with a different payload it is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, text
from sqlalchemy.exc import IntegrityError

from connector import testpoints, visible
from connector.errors import ConnectorError, CurrencyMismatch, IdempotencyConflict, InvalidInput, NotFound, ReversalRefused
from connector.ledger import store
from connector.db.engine import make_engine, write_transaction
from connector.ledger.planners import Request, as_utc, check_balance_limit, customer_key, make_request, plan, posting_key
from connector.ledger.plan import NewLot, Plan, PlannedEntry, payload_hash
from connector.ledger.rules import REFUND_POLICIES, AccountState, LotState
from connector.ledger.tables import Terms
from connector.timeutil import utcnow
from connector.money import currency_code, fmt, from_minor, parse_amount, to_minor

terms_table = Terms.__table__  # type: ignore[attr-defined]
_ALL_BALANCES = text("SELECT customer_key, currency, balance, debt, credit_limit FROM accounts "
                     "ORDER BY customer_key, currency")
MAX_ID = 2**31 - 1  # entry ids are 32-bit integers on PostgreSQL; a larger id names no entry
_REFUND_POLICY = text("SELECT refund_policy, refund_fee_pct FROM terms WHERE customer_key = :customer "
                      "AND currency = :currency AND contract_ref = ''")


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


@dataclass(frozen=True)
class BalanceView:
    """An account's balance now or as of a time."""

    customer: str
    currency: str
    balance: Decimal
    available: Decimal | None = None
    debt: Decimal | None = None
    credit_limit: Decimal | None = None
    as_of: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form with decimal strings."""
        out: dict[str, Any] = {"customer": self.customer, "currency": self.currency, "balance": str(self.balance)}
        for name in ("available", "debt", "credit_limit"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        return out


@dataclass
class Statement:
    """Entries of one account between two times, with opening and closing balances."""

    customer: str
    currency: str
    start: datetime | None
    end: datetime | None
    opening: Decimal
    closing: Decimal
    entries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"customer": self.customer, "currency": self.currency,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "opening": str(self.opening), "closing": str(self.closing), "entries": self.entries}


class Ledger:
    """Deposits, consumption, refunds, adjustments, reversals and expiry over one database."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow,
                 deposit_guard: Callable[[Request], None] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.deposit_guard = deposit_guard  # may refuse new deposits (compliance stop switch) by raising

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
        """Run one validated request in its own transaction."""

        def planner(conn: Connection, now: datetime) -> Plan:
            state = store.lock_account(conn, req.customer, req.currency, now, key=req.key)
            assert state is not None
            existing = store.find_posting(conn, req.key)
            if existing is not None:
                raise _Replay(existing)
            self._admit(conn, state, req)
            if req.op != "refund":
                return plan(state, req, now)
            policy, fee_pct = self._refund_policy(conn, req.customer, req.currency)
            return plan(state, req, now, refund_policy=policy, refund_fee_pct=fee_pct)

        return self._run(req.key, req.hash(), planner, _asked(req))

    def post_batch(self, requests: Sequence[Request], *,
                   hook: Callable[[Connection, list[BatchOutcome]], None] | None = None) -> list[BatchOutcome]:
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
        policies: dict[tuple[str, str], tuple[str, Decimal]] = {}
        states = store.lock_accounts(conn, {(r.customer, r.currency) for r in reqs}, now, policies=policies)
        writer = store.PlanWriter(conn, now, batch_hint=len(reqs))
        outcomes = self.apply_requests(conn, reqs, states, policies, writer, now)
        writer.flush()
        return outcomes

    def apply_requests(self, conn: Connection, reqs: list[Request], states: dict[tuple[str, str], AccountState],
                       policies: dict[tuple[str, str], tuple[str, Decimal]], writer: store.PlanWriter,
                       now: datetime, *, results: bool = True) -> list[BatchOutcome]:
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

    def reverse(self, entry_id: int, key: str, *, memo: str = "", effective_at: datetime | None = None) -> PostingResult:
        """Post the exact opposite of an entry; the original never changes."""
        key = posting_key(key)
        memo = visible.check((memo or "").strip(), "memo", memo=True)
        if isinstance(entry_id, bool) or not isinstance(entry_id, int) or not 0 < entry_id <= MAX_ID:
            raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
        eff = as_utc(effective_at, "effective_at")
        digest = payload_hash("reverse", {"entry_id": entry_id, "effective_at": eff})

        def planner(conn: Connection, now: datetime) -> Plan:
            row = conn.execute(select(store.entries).where(store.entries.c.id == entry_id)).first()
            if row is None:
                raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
            state = store.lock_account_by_id(conn, row.account_id, now)
            existing = store.find_posting(conn, key)
            if existing is not None:
                raise _Replay(existing)
            return self._plan_reversal(conn, state, row, key, digest, memo, eff or now)

        return self._run(key, digest, planner)

    def _plan_reversal(self, conn: Connection, state: AccountState, row: Any, key: str, digest: str,
                       memo: str, at: datetime) -> Plan:
        cur = state.currency
        if row.kind == "reverse":
            raise ReversalRefused(f"entry {row.id} is itself a reversal; post a new entry instead", entry=row.id)
        if row.kind == "expire":
            raise ReversalRefused(f"entry {row.id} is an expiry; restore expired money with an adjustment "
                                  "(with a new expiry date if needed)", entry=row.id)
        done = conn.execute(select(store.entries.c.id).where(store.entries.c.reverses_id == row.id)).first()
        if done is not None:
            raise ReversalRefused(f"entry {row.id} was already reversed by entry {done.id}", entry=row.id)
        allocs = conn.execute(select(store.allocations.c.lot_id, store.allocations.c.amount)
                              .where(store.allocations.c.entry_id == row.id)).all()
        lot_ids = {a.lot_id for a in allocs if a.lot_id is not None}
        open_by_id = {lot.id: lot for lot in state.lots}
        missing = lot_ids - set(open_by_id)
        if missing:
            for lot in store.load_lots(conn, store.lots.c.id.in_(missing)):
                open_by_id[lot.id] = lot
        pe = PlannedEntry(kind="reverse", amount=-row.amount, effective_at=at, memo=memo or f"reverses entry {row.id}",
                          source_system=row.source_system, source_id=row.source_id, reverses_id=row.id)
        net: dict[int, int] = {}
        credit_line = 0  # the reversal's credit-line allocation: > 0 lowers the debt, < 0 raises it
        for a in allocs:
            if a.lot_id is None:
                credit_line -= a.amount
            else:
                net[a.lot_id] = net.get(a.lot_id, 0) - a.amount
        for lot_id, delta in sorted(net.items()):
            lot = open_by_id[lot_id]
            if lot.remaining + delta < 0:
                raise ReversalRefused(
                    f"entry {row.id} cannot be reversed: lot {lot.id} has only {fmt(lot.remaining, cur)} {cur} left "
                    f"of the {fmt(-delta, cur)} it would take back; reverse the spending first or post an adjustment",
                    entry=row.id, lot=lot.id)
            if delta:
                pe.allocations.append((lot, delta))
        if credit_line > 0:
            # Credit-line use being undone: repay what is still owed; if a later deposit already
            # repaid it, the customer overpaid, and that money comes back as a new (refundable) lot.
            repay = min(state.debt, credit_line)
            if repay:
                pe.allocations.append((None, repay))
            if credit_line > repay:
                back = credit_line - repay
                pe.new_lot = NewLot(amount=back, effective_at=at, expires_at=None, refundable=True, priority=50)
                pe.allocations.append((pe.new_lot, back))
        elif credit_line < 0:
            if state.debt - credit_line > state.credit_limit:
                raise ReversalRefused(f"entry {row.id} cannot be reversed: it would take customer "
                                      f"{state.customer_key} past the credit limit of "
                                      f"{fmt(state.credit_limit, cur)} {cur}", entry=row.id)
            pe.allocations.append((None, credit_line))
        check_balance_limit(state, [pe], f"reversal of entry {row.id}")
        return Plan(op="reverse", key=key, payload_hash=digest, account=state, entries=[pe],
                    extra={"amount": fmt(-row.amount, cur), "reverses": row.id})

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
                writer = store.PlanWriter(conn, now)
                for lot in sorted(state.lots, key=lambda lot: lot.id):
                    if lot.expires_at is None or lot.expires_at > cutoff or lot.remaining <= 0:
                        continue
                    gone = lot.amount - lot.remaining
                    key = f"expire:lot:{lot.id}:{gone}"
                    pe = PlannedEntry(kind="expire", amount=-lot.remaining, effective_at=lot.expires_at,
                                      memo=f"lot {lot.id} expired", allocations=[(lot, -lot.remaining)])
                    p = Plan(op="expire", key=key, payload_hash=payload_hash("expire", {"lot": lot.id, "gone": gone}),
                             account=state, entries=[pe], extra={"amount": fmt(lot.remaining, currency), "lot": lot.id})
                    data = writer.apply(p)
                    assert data is not None
                    results.append(PostingResult("created", data))
                writer.flush()
        return results

    def _run(self, key: str, digest: str, planner: Callable[[Connection, datetime], Plan],
             asked: str = "") -> PostingResult:
        try:
            with write_transaction(self.engine) as conn:
                now = self.clock()
                try:
                    p = planner(conn, now)
                except _Replay as replay:
                    result = _replayed(conn, replay.row, key, digest, asked)
                else:
                    writer = store.PlanWriter(conn, now)
                    data = writer.apply(p)
                    writer.flush()
                    assert data is not None
                    result = PostingResult("created", data)
                return result
        except IntegrityError:
            # Lost a race on the same key from another account's transaction: answer as a replay.
            with self.engine.connect() as conn:
                row = store.find_posting(conn, key)
                if row is None:
                    raise
                return _replayed(conn, row, key, digest, asked)

    def _admit(self, conn: Connection, state: AccountState, req: Request,
               pending: dict[tuple[str, str], AccountState] | None = None) -> None:
        """Checks a new posting passes before it is planned: the deposit guard, currencies never mixing."""
        if req.op == "deposit" and self.deposit_guard is not None:
            self.deposit_guard(req)
        if req.op in ("consume", "refund") or (req.op == "adjust" and req.amount < 0):
            self._check_currency(conn, state, req, pending)

    def _check_currency(self, conn: Connection, state: AccountState, req: Request,
                        pending: dict[tuple[str, str], AccountState] | None = None) -> None:
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
                f"{req.op} of {fmt(req.amount, req.currency)} {req.currency} for customer {req.customer} refused: "
                f"the customer holds {', '.join(others)}, not {req.currency}; currencies never mix",
                customer=req.customer, currency=req.currency)

    def _refund_policy(self, conn: Connection, customer: str, currency: str) -> tuple[str, Decimal]:
        row = conn.execute(_REFUND_POLICY, {"customer": customer, "currency": currency}).first()
        return (row.refund_policy, Decimal(row.refund_fee_pct)) if row else ("full", Decimal(0))

    # -- terms ------------------------------------------------------------------------------

    def set_terms(self, customer: str, currency: str, *, contract_ref: str = "", agreed_amount: object = None,
                  due_date: date | None = None, valid_from: date | None = None, valid_until: date | None = None,
                  refund_policy: str = "full", refund_fee_pct: object = 0, credit_limit: object = 0,
                  low_balance_threshold: object = None, active: bool = True) -> dict[str, Any]:
        """Create or replace the terms of a customer (contract_ref '') or of one of its contracts."""
        row = _terms_row(customer, currency, contract_ref=contract_ref, agreed_amount=agreed_amount,
                         due_date=due_date, valid_from=valid_from, valid_until=valid_until,
                         refund_policy=refund_policy, refund_fee_pct=refund_fee_pct, credit_limit=credit_limit,
                         low_balance_threshold=low_balance_threshold, active=active)
        with write_transaction(self.engine) as conn:
            self._write_terms(conn, [row], self.clock())
        return self.get_terms(row["customer_key"], row["currency"], row["contract_ref"]) or {}

    def set_terms_many(self, items: Sequence[dict[str, Any]], *,
                       hook: Callable[[Connection, list[ConnectorError | None]], None] | None = None
                       ) -> list[ConnectorError | None]:
        """`set_terms` for many, in order, in ONE transaction; per item None (written) or the refusal.

        Each item holds `set_terms`' arguments by name (`customer`, `currency`, ...). An invalid
        item writes nothing and does not stop the others; later items win over earlier ones for the
        same terms, as one `set_terms` call after another would. `hook(conn, outcomes)` runs in the
        same transaction.
        """
        rows: list[dict[str, Any]] = []
        outcomes: list[ConnectorError | None] = []
        for item in items:
            try:
                rows.append(_terms_row(**item))
                outcomes.append(None)
            except ConnectorError as exc:
                outcomes.append(exc)
        if not items:
            return outcomes
        with write_transaction(self.engine) as conn:
            self._write_terms(conn, rows, self.clock())
            if hook is not None:
                hook(conn, outcomes)
        return outcomes

    def _write_terms(self, conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
        customer_level = [(r["customer_key"], r["currency"]) for r in rows if r["contract_ref"] == ""]
        states = store.lock_accounts(conn, customer_level, now) if customer_level else {}
        limits: dict[int, int] = {}
        for row in rows:
            row["updated_at"] = now
            if row["contract_ref"] == "":
                limits[states[(row["customer_key"], row["currency"])].id] = row["credit_limit"]
        if limits:
            store.bulk_update(conn, "UPDATE accounts SET credit_limit = ?, updated_at = ? WHERE id = ?",
                              [(limit, now, acc_id) for acc_id, limit in limits.items()])
        scopes = {(r["customer_key"], r["currency"], r["contract_ref"]) for r in rows}
        customers = sorted({c for c, _, _ in scopes})
        have: set[tuple[str, str, str]] = set()
        for start in range(0, len(customers), 5000):
            have |= {(r.customer_key, r.currency, r.contract_ref) for r in conn.execute(
                select(terms_table.c.customer_key, terms_table.c.currency, terms_table.c.contract_ref).where(
                    store.one_of(conn, terms_table.c.customer_key, customers[start:start + 5000])))}
        for row in rows:
            scope = (row["customer_key"], row["currency"], row["contract_ref"])
            if scope in have:
                conn.execute(terms_table.update().where(
                    terms_table.c.customer_key == scope[0], terms_table.c.currency == scope[1],
                    terms_table.c.contract_ref == scope[2]).values(**row))
            else:
                conn.execute(terms_table.insert().values(**row))
                have.add(scope)

    def get_terms(self, customer: str, currency: str, contract_ref: str = "") -> dict[str, Any] | None:
        """Terms as JSON-friendly data, or None."""
        cur = currency_code(currency)
        with self.engine.connect() as conn:
            row = conn.execute(select(terms_table).where(
                terms_table.c.customer_key == customer, terms_table.c.currency == cur,
                terms_table.c.contract_ref == contract_ref)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        for name in ("agreed_amount", "credit_limit", "low_balance_threshold"):
            if out[name] is not None:
                out[name] = fmt(out[name], cur)
        for name in ("due_date", "valid_from", "valid_until", "updated_at"):
            out[name] = out[name].isoformat() if out[name] else None
        out.pop("id", None)
        return out

    # -- queries ----------------------------------------------------------------------------

    def balance(self, customer: str, currency: str | None = None, *, as_of: datetime | None = None,
                known_at: datetime | None = None) -> list[BalanceView]:
        """Balances of a customer (one per currency): now, or as of a business time as known at a time."""
        cur = currency_code(currency) if currency else None
        as_of, known_at = as_utc(as_of, "as_of"), as_utc(known_at, "known_at")
        acc = store.accounts
        with self.engine.connect() as conn:
            query = select(acc).where(acc.c.customer_key == customer)
            if cur:
                query = query.where(acc.c.currency == cur)
            rows = conn.execute(query.order_by(acc.c.currency)).all()
            if not rows:
                what = f"customer {customer}" + (f" in {cur}" if cur else "")
                raise NotFound(f"{what} has no ledger account", customer=customer)
            views = []
            now = self.clock()
            for row in rows:
                c = row.currency
                if as_of is None and known_at is None:
                    views.append(_current_view(row, store.load_lots(conn, and_(
                        store.lots.c.account_id == row.id, store.lots.c.remaining > 0)), now))
                    continue
                cond = [store.entries.c.account_id == row.id]
                if as_of is not None:
                    cond.append(store.entries.c.effective_at <= as_of)
                if known_at is not None:
                    cond.append(store.entries.c.recorded_at <= known_at)
                total = conn.execute(select(func.coalesce(func.sum(store.entries.c.amount), 0)).where(*cond)).scalar()
                views.append(BalanceView(customer, c, from_minor(int(total), c), as_of=as_of or known_at))
        return views

    def balances_with_prefix(self, prefix: str) -> dict[tuple[str, str], BalanceView]:
        """Current balance views (with `available`, as `balance` computes it) of every customer whose key starts
        with `prefix`, keyed by (customer, currency); two queries however many accounts."""
        acc, lots = store.accounts, store.lots
        with self.engine.connect() as conn:
            rows = conn.execute(select(acc).where(acc.c.customer_key.startswith(prefix, autoescape=True))).all()
            ids = select(acc.c.id).where(acc.c.customer_key.startswith(prefix, autoescape=True))
            lots_of = store.load_lots_by_account(conn, and_(lots.c.account_id.in_(ids), lots.c.remaining > 0))
        now = self.clock()
        out: dict[tuple[str, str], BalanceView] = {}
        for row in rows:
            out[(row.customer_key, row.currency)] = _current_view(row, lots_of.get(row.id, []), now)
        return out

    def accounts(self, *, batch: int = 5000) -> Iterator[BalanceView]:
        """Every account with its balance, streamed in customer order."""
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=batch).execute(_ALL_BALANCES)
            for customer, cur, balance, debt, limit in rows:
                yield BalanceView(customer, cur, Decimal(fmt(balance, cur)), debt=Decimal(fmt(debt, cur)),
                                  credit_limit=Decimal(fmt(limit, cur)))

    def history(self, customer: str, currency: str | None = None, *, start: datetime | None = None,
                end: datetime | None = None) -> list[Statement]:
        """Statements per currency: entries with start <= effective time < end, in business-time order."""
        start, end = as_utc(start, "start"), as_utc(end, "end")
        e = store.entries
        out = []
        with self.engine.connect() as conn:
            for view in self.balance(customer, currency):
                c = view.currency
                acc_id = conn.execute(select(store.accounts.c.id).where(
                    store.accounts.c.customer_key == customer, store.accounts.c.currency == c)).scalar_one()
                opening = 0
                if start is not None:
                    opening = int(conn.execute(select(func.coalesce(func.sum(e.c.amount), 0)).where(
                        e.c.account_id == acc_id, e.c.effective_at < start)).scalar())
                q = select(e).where(e.c.account_id == acc_id)
                if start is not None:
                    q = q.where(e.c.effective_at >= start)
                if end is not None:
                    q = q.where(e.c.effective_at < end)
                running = opening
                rows = []
                for r in conn.execute(q.order_by(e.c.effective_at, e.c.id)):
                    running += r.amount
                    rows.append({"id": r.id, "kind": r.kind, "amount": fmt(r.amount, c), "running": fmt(running, c),
                                 "balance_after": fmt(r.balance_after, c), "effective_at": r.effective_at.isoformat(),
                                 "recorded_at": r.recorded_at.isoformat(), "key": r.posting_key,
                                 "source": f"{r.source_system}:{r.source_id}" if r.source_system else None,
                                 "memo": r.memo, "reverses": r.reverses_id})
                out.append(Statement(customer, c, start, end, from_minor(opening, c), from_minor(running, c), rows))
        return out

    def entry(self, entry_id: int) -> dict[str, Any]:
        """One entry with its allocations."""
        if isinstance(entry_id, bool) or not isinstance(entry_id, int) or not 0 < entry_id <= MAX_ID:
            raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(store.entries, store.accounts.c.currency, store.accounts.c.customer_key)
                               .join(store.accounts, store.accounts.c.id == store.entries.c.account_id)
                               .where(store.entries.c.id == entry_id)).first()
            if row is None:
                raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
            allocs = conn.execute(select(store.allocations.c.lot_id, store.allocations.c.amount)
                                  .where(store.allocations.c.entry_id == entry_id)).all()
        c = row.currency
        return {"id": row.id, "customer": row.customer_key, "currency": c, "kind": row.kind,
                "amount": fmt(row.amount, c), "balance_after": fmt(row.balance_after, c),
                "effective_at": row.effective_at.isoformat(), "recorded_at": row.recorded_at.isoformat(),
                "key": row.posting_key, "memo": row.memo, "reverses": row.reverses_id,
                "allocations": [{"lot_id": a.lot_id, "amount": fmt(a.amount, c)} for a in allocs]}


class _Replay(Exception):
    """Internal: the key exists; unwind the transaction and answer from the stored posting."""

    def __init__(self, row: Any) -> None:
        super().__init__("replay")
        self.row = row


def _current_view(row: Any, open_lots: list[LotState], now: datetime) -> BalanceView:
    """An account row and its open lots as the balance now, with what is available to spend."""
    c = row.currency
    state = AccountState(row.id, row.customer_key, c, row.balance, row.debt, row.credit_limit, open_lots)
    return BalanceView(row.customer_key, c, from_minor(row.balance, c), from_minor(state.available(now), c),
                       from_minor(row.debt, c), from_minor(row.credit_limit, c))


def _conflict(key: str, op: str, customer: str, currency: str, asked: str) -> IdempotencyConflict:
    """The refusal of a key already used, by this batch or before, with another payload."""
    return IdempotencyConflict(
        f"{asked + ' refused: ' if asked else ''}idempotency key {key!r} was already used for a different "
        f"{op} (customer {customer}, {currency}); nothing was written", key=key, customer=customer)


def _asked(req: Request) -> str:
    """The request in words, for refusals: `consume of 5.00 CNY for customer c1`."""
    return f"{req.op} of {fmt(abs(req.amount), req.currency)} {req.currency} for customer {req.customer}"


def _replayed(conn: Connection, row: Any, key: str, digest: str, asked: str = "") -> PostingResult:
    if row.payload_hash != digest:
        raise _conflict(key, row.op, row.customer_key, row.currency, asked)
    return PostingResult("exists", store.rebuild_result(conn, row))


def _terms_row(customer: str, currency: str, *, contract_ref: str = "", agreed_amount: object = None,
               due_date: date | None = None, valid_from: date | None = None, valid_until: date | None = None,
               refund_policy: str = "full", refund_fee_pct: object = 0, credit_limit: object = 0,
               low_balance_threshold: object = None, active: bool = True) -> dict[str, Any]:
    """Validate `set_terms` arguments into a terms row (amounts in minor units)."""
    cur = currency_code(currency)
    customer = customer_key(customer)
    contract_ref = visible.check(contract_ref or "", "contract")
    if refund_policy not in REFUND_POLICIES:
        raise InvalidInput(f"refund_policy: {refund_policy!r} is not one of {', '.join(REFUND_POLICIES)}",
                           field="refund_policy")
    pct = parse_amount(refund_fee_pct, "USD", field="refund_fee_pct", allow_zero=True)
    if pct > 100:
        raise InvalidInput("refund_fee_pct: must be between 0 and 100", field="refund_fee_pct")

    def minor(value: object, name: str, zero: bool = True) -> int | None:
        if value is None:
            return None
        return to_minor(parse_amount(value, cur, field=name, allow_zero=zero), cur)

    return {"customer_key": customer, "currency": cur, "contract_ref": contract_ref,
            "agreed_amount": minor(agreed_amount, "agreed_amount"), "due_date": due_date,
            "valid_from": valid_from, "valid_until": valid_until, "refund_policy": refund_policy,
            "refund_fee_pct": str(pct), "credit_limit": minor(credit_limit, "credit_limit") or 0,
            "low_balance_threshold": minor(low_balance_threshold, "low_balance_threshold"), "active": bool(active)}
