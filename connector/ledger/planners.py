"""Posting requests and their planners: turn a validated request plus account state into a Plan.

Pure functions over `rules` state, shared by `Ledger` and the CSV importer, so both refuse
the same things with the same messages. Reversals and expiries are planned here too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connector import visible
from connector.errors import InsufficientBalance, InvalidInput, NotFound, RefundRefused, ReversalRefused
from connector.ledger.plan import NewLot, Plan, PlannedEntry, payload_hash
from connector.ledger.rules import AccountState, EntryState, LotState, draw, refund_fee, refundable_caps
from connector.money import currency_code, fmt, max_amount, parse_minor, within_limit
from connector.timeutil import check_range

OPS = ("deposit", "consume", "refund", "adjust")
MAX_KEY = 255
FUTURE_SKEW = timedelta(minutes=5)
MAX_ID = 2**31 - 1  # entry ids are 32-bit integers on PostgreSQL; a larger id names no entry


@dataclass(frozen=True, slots=True)
class Request:
    """A validated posting request (amounts in minor units; adjust amounts are signed)."""

    op: str
    customer: str
    currency: str
    amount: int
    key: str
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    refundable: bool | None = None
    priority: int | None = None
    source_system: str | None = None
    source_id: str | None = None
    memo: str = ""

    def payload(self) -> dict[str, Any]:
        """What the idempotency check compares (memo is commentary and is left out)."""
        return {
            "customer": self.customer, "currency": self.currency, "amount": fmt(self.amount, self.currency),
            "effective_at": self.effective_at, "expires_at": self.expires_at, "refundable": self.refundable,
            "priority": self.priority, "source_system": self.source_system, "source_id": self.source_id
        }

    def hash(self) -> str:
        """Payload hash for the idempotency record (same canonical form as `plan.payload_hash`)."""
        eff, exp = self.effective_at, self.expires_at
        canonical = (f"{self.op}\x1famount={fmt(self.amount, self.currency)}\x1fcurrency={self.currency}"
                     f"\x1fcustomer={self.customer}\x1feffective_at={'' if eff is None else eff.isoformat()}"
                     f"\x1fexpires_at={'' if exp is None else exp.isoformat()}"
                     f"\x1fpriority={_text(self.priority)}\x1frefundable={_text(self.refundable)}"
                     f"\x1fsource_id={_text(self.source_id)}\x1fsource_system={_text(self.source_system)}")
        return hashlib.sha256(canonical.encode()).hexdigest()


def _text(value: object) -> str:
    """A payload value in the hash's canonical form: `str()`, None as empty."""
    return "" if value is None else str(value)


def as_utc(value: datetime | None, field: str) -> datetime | None:
    """Aware UTC datetime; a naive one is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field}: expected a date-time, got {value!r}", field=field)
    return check_range(value, field)


def make_request(op: str, customer: str, amount: object, currency: str, key: str, *,
                 effective_at: datetime | None = None, expires_at: datetime | None = None,
                 refundable: bool | None = None, priority: int | None = None,
                 source: tuple[str, str] | None = None, memo: str = "") -> Request:
    """Validate inputs into a `Request`; every problem names the field and the reason.

    Checks that depend on the clock (no post-dating, expiry after the effective time) run in
    `plan`, after the idempotency lookup, so that a replay is answered even when time has moved on.
    """
    if op not in OPS:
        raise InvalidInput(f"op: unknown operation {op!r}; use one of {', '.join(OPS)}", field="op")
    customer = customer_key(customer)
    key = posting_key(key)
    cur = currency_code(currency)
    signed = op == "adjust"
    minor = parse_minor(amount, cur, allow_negative=signed)
    eff = as_utc(effective_at, "effective_at")
    exp = as_utc(expires_at, "expires_at")
    creates_lot = op == "deposit" or (op == "adjust" and minor > 0)
    if exp is not None:
        if not creates_lot:
            raise InvalidInput(f"expires_at: only deposits and positive adjustments create lots that expire "
                               f"(got it on {op})", field="expires_at")
        if eff is not None and exp <= eff:
            raise InvalidInput(f"expires_at: {exp.isoformat()} is not after the effective time",
                               field="expires_at")
    if op == "adjust" and not memo.strip():
        raise InvalidInput("memo: an adjustment needs a memo saying why", field="memo")
    if priority is not None and not 0 <= priority <= 1000:
        raise InvalidInput("priority: must be between 0 and 1000", field="priority")
    if creates_lot:
        refundable = (op == "deposit") if refundable is None else refundable
        priority = 50 if priority is None else priority
    else:
        refundable = priority = None
    system, source_id = source if source else (None, None)
    if system is not None:
        system = _bounded(visible.check(system, "source"), "source", "a source system", 64)
        source_id = _bounded(visible.check(source_id or "", "source"), "source", "a source record id", 255)
    return Request(op=op, customer=customer, currency=cur, amount=minor, key=key, effective_at=eff,
                   expires_at=exp, refundable=refundable, priority=priority, source_system=system,
                   source_id=source_id, memo=visible.check(memo.strip(), "memo", memo=True))


def check_entry_id(entry_id: object) -> int:
    """An entry id that may name an entry; NotFound for anything else (a bool, a string, 0, past `MAX_ID`)."""
    if isinstance(entry_id, bool) or not isinstance(entry_id, int) or not 0 < entry_id <= MAX_ID:
        raise NotFound(f"entry {entry_id} does not exist", entry=entry_id)
    return entry_id


def customer_key(value: str) -> str:
    """A customer key as the ledger stores it: stripped, 1 to 255 visible characters."""
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text or len(text) > 255:
        raise InvalidInput("customer: a customer key of 1 to 255 characters is required", field="customer")
    return visible.check(text, "customer")


def posting_key(value: str) -> str:
    """An idempotency key as the ledger stores it: stripped, 1 to `MAX_KEY` visible characters."""
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_KEY:
        raise InvalidInput(f"key: an idempotency key of 1 to {MAX_KEY} characters is required", field="key")
    return visible.check(text, "key")


def _bounded(value: str, field: str, what: str, most: int) -> str:
    if len(value) > most:
        raise InvalidInput(f"{field}: {what} of at most {most} characters is required (got {len(value)})",
                           field=field)
    return value


def _entry(req: Request, kind: str, amount: int, at: datetime) -> PlannedEntry:
    return PlannedEntry(kind=kind, amount=amount, effective_at=at, memo=req.memo,
                        source_system=req.source_system, source_id=req.source_id)


def _credit(state: AccountState, req: Request, kind: str, at: datetime, refundable: bool) -> PlannedEntry:
    """Money in: a new lot, which first repays any credit-line debt."""
    lot = NewLot(amount=req.amount, effective_at=at, expires_at=req.expires_at, refundable=refundable,
                 priority=req.priority if req.priority is not None else 50,
                 source_system=req.source_system, source_id=req.source_id)
    pe = _entry(req, kind, req.amount, at)
    pe.new_lot = lot
    pe.allocations.append((lot, req.amount))
    repay = min(state.debt, req.amount)
    if repay:
        pe.allocations += [(lot, -repay), (None, repay)]
    return pe


def _debit(state: AccountState, req: Request, kind: str, amount: int, at: datetime) -> PlannedEntry:
    """Money out: draw lots in order, then the credit line; refuse past the credit limit."""
    order = state.spendable(at)
    available = sum(lot.remaining for lot in order) + state.credit_limit - state.debt  # `state.available`
    if amount > available:
        cur = state.currency
        raise InsufficientBalance(
            f"{req.op} of {fmt(amount, cur)} {cur} for customer {state.customer_key} refused: only "
            f"{fmt(max(available, 0), cur)} {cur} available (credit limit {fmt(state.credit_limit, cur)})",
            customer=state.customer_key, amount=fmt(amount, cur), available=fmt(available, cur))
    pe = _entry(req, kind, -amount, at)
    taken = draw(order, amount)
    pe.allocations = [(lot, -take) for lot, take in taken]
    rest = amount - sum(t for _, t in taken)
    if rest:
        pe.allocations.append((None, -rest))
    return pe


def plan(state: AccountState, req: Request, now: datetime, *, refund_policy: str = "full",
         refund_fee_pct: Decimal = Decimal(0), digest: str | None = None) -> Plan:
    """Plan `req` against `state`; raises a `LedgerRuleError` when a rule refuses it."""
    at = req.effective_at or now
    _check_times(req, at, now)
    extra: dict[str, Any] = {"amount": fmt(req.amount, req.currency)}
    if req.op == "deposit":
        entries = [_credit(state, req, "deposit", at, req.refundable if req.refundable is not None else True)]
    elif req.op == "consume":
        entries = [_debit(state, req, "consume", req.amount, at)]
    elif req.op == "adjust":
        entries = [_credit(state, req, "adjust", at, bool(req.refundable)) if req.amount > 0
                   else _debit(state, req, "adjust", -req.amount, at)]
    else:
        entries = _plan_refund(state, req, at, refund_policy, refund_fee_pct, extra)
    if not within_limit(state.balance + sum(pe.amount for pe in entries)):  # the message only when refused
        asked = f"{req.op} of {fmt(abs(req.amount), req.currency)} {req.currency}"
        check_balance_limit(state, entries, asked)
    return Plan(op=req.op, key=req.key, payload_hash=digest or req.hash(), account=state, entries=entries,
                extra=extra)


def check_balance_limit(state: AccountState, entries: list[PlannedEntry], asked: str) -> None:
    """Refuse (exit 2) a posting that would take the balance past `MAX_MINOR` (docs/ledger.md, Limits)."""
    after = state.balance + sum(pe.amount for pe in entries)
    if not within_limit(after):
        cur = state.currency
        raise InvalidInput(f"{asked} for customer {state.customer_key} refused: the balance would be "
                           f"{fmt(after, cur)} {cur}, above the limit of {max_amount(cur)} {cur} per balance "
                           "(see 'Limits' in docs/ledger.md); nothing was written", field="amount",
                           customer=state.customer_key)


def _check_times(req: Request, at: datetime, now: datetime) -> None:
    if req.effective_at is not None and req.effective_at > now + FUTURE_SKEW:
        raise InvalidInput(f"effective_at: {req.effective_at.isoformat()} is in the future; entries may be "
                           "backdated, not post-dated", field="effective_at")
    if req.expires_at is not None and req.expires_at <= at:
        raise InvalidInput(f"expires_at: {req.expires_at.isoformat()} is not after the effective time "
                           f"{at.isoformat()}", field="expires_at")


def _plan_refund(state: AccountState, req: Request, at: datetime, policy: str, fee_pct: Decimal,
                 extra: dict[str, Any]) -> list[PlannedEntry]:
    cur = state.currency
    if policy == "none":
        raise RefundRefused(
            f"refund of {fmt(req.amount, cur)} {cur} for customer {state.customer_key} refused: "
            "the refund policy is 'none'", customer=state.customer_key, policy=policy)
    caps = refundable_caps(state, policy, at)
    refundable = max(0, sum(caps.values()) - state.debt)
    if req.amount > refundable:
        raise RefundRefused(
            f"refund of {fmt(req.amount, cur)} {cur} for customer {state.customer_key} refused: only "
            f"{fmt(refundable, cur)} {cur} is refundable under policy '{policy}'",
            customer=state.customer_key, amount=fmt(req.amount, cur), refundable=fmt(refundable, cur))
    fee = refund_fee(req.amount, fee_pct) if policy == "fee" else 0
    payout = req.amount - fee
    order = state.spendable(at)
    out: list[PlannedEntry] = []
    for kind, amount in (("refund", payout), ("refund_fee", fee)):
        if amount <= 0:
            continue
        pe = _entry(req, kind, -amount, at)
        taken = draw(order, amount, caps)
        for lot, take in taken:
            caps[lot.id] -= take
        pe.allocations = [(lot, -take) for lot, take in taken]
        out.append(pe)
    extra.update(payout=fmt(payout, cur), fee=fmt(fee, cur), policy=policy)
    return out


def plan_reversal(state: AccountState, entry: EntryState, key: str, digest: str, memo: str,
                  at: datetime) -> Plan:
    """Plan the exact opposite of `entry` of the locked account `state`; `ReversalRefused` if it can't be."""
    cur = state.currency
    if entry.kind == "reverse":
        raise ReversalRefused(f"entry {entry.id} is itself a reversal; post a new entry instead",
                              entry=entry.id)
    if entry.kind == "expire":
        raise ReversalRefused(f"entry {entry.id} is an expiry; restore expired money with an adjustment "
                              "(with a new expiry date if needed)", entry=entry.id)
    if entry.reversed_by is not None:
        raise ReversalRefused(f"entry {entry.id} was already reversed by entry {entry.reversed_by}",
                              entry=entry.id)
    pe = PlannedEntry(kind="reverse", amount=-entry.amount, effective_at=at,
                      memo=memo or f"reverses entry {entry.id}", source_system=entry.source_system,
                      source_id=entry.source_id, reverses_id=entry.id)
    net: dict[int, int] = {}
    credit_line = 0  # the reversal's credit-line allocation: > 0 lowers the debt, < 0 raises it
    for lot_id, amount in entry.allocations:
        if lot_id is None:
            credit_line -= amount
        else:
            net[lot_id] = net.get(lot_id, 0) - amount
    for lot_id, delta in sorted(net.items()):
        lot = entry.lots[lot_id]
        if lot.remaining + delta < 0:
            raise ReversalRefused(
                f"entry {entry.id} cannot be reversed: lot {lot.id} has only {fmt(lot.remaining, cur)} {cur} "
                f"left of the {fmt(-delta, cur)} it would take back; reverse the spending first or post an "
                "adjustment", entry=entry.id, lot=lot.id)
        if delta:
            pe.allocations.append((lot, delta))
    _reverse_credit_line(state, entry, pe, credit_line, at)
    check_balance_limit(state, [pe], f"reversal of entry {entry.id}")
    return Plan(op="reverse", key=key, payload_hash=digest, account=state, entries=[pe],
                extra={"amount": fmt(-entry.amount, cur), "reverses": entry.id})


def _reverse_credit_line(state: AccountState, entry: EntryState, pe: PlannedEntry, credit_line: int,
                         at: datetime) -> None:
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
            cur = state.currency
            raise ReversalRefused(f"entry {entry.id} cannot be reversed: it would take customer "
                                  f"{state.customer_key} past the credit limit of "
                                  f"{fmt(state.credit_limit, cur)} {cur}", entry=entry.id)
        pe.allocations.append((None, credit_line))


def plan_expiry(state: AccountState, lot: LotState) -> Plan:
    """Expire what is left of an overdue `lot`, under a key naming the lot and how much of it was used."""
    assert lot.expires_at is not None
    gone = lot.amount - lot.remaining
    pe = PlannedEntry(kind="expire", amount=-lot.remaining, effective_at=lot.expires_at,
                      memo=f"lot {lot.id} expired", allocations=[(lot, -lot.remaining)])
    return Plan(op="expire", key=f"expire:lot:{lot.id}:{gone}",
                payload_hash=payload_hash("expire", {"lot": lot.id, "gone": gone}), account=state,
                entries=[pe], extra={"amount": fmt(lot.remaining, state.currency), "lot": lot.id})
