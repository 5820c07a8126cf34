"""Pure ledger rules: drawdown order, spendable and refundable amounts, refund fees.

Nothing here touches the database, so the single-posting path and the bulk importer apply
exactly the same rules. Amounts are integer minor units.

Drawdown order (total, deterministic): lower `priority` first, then the soonest `expires_at`
(lots that never expire last), then the oldest `effective_at`, then the lowest lot id.
A lot is spendable at time T when it is effective (`effective_at <= T`), has not expired
(`expires_at` is empty or later than T) and has money left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

RefundPolicy = Literal["full", "pro_rata", "none", "fee"]
REFUND_POLICIES: tuple[str, ...] = ("full", "pro_rata", "none", "fee")
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


@dataclass(slots=True)
class LotState:
    """The part of a lot the rules need."""

    id: int
    amount: int
    remaining: int
    effective_at: datetime
    expires_at: datetime | None
    refundable: bool
    priority: int

    def spendable_at(self, at: datetime) -> bool:
        """Effective, unexpired and not empty at `at`."""
        return self.remaining > 0 and self.effective_at <= at and (self.expires_at is None or
                                                                   self.expires_at > at)

    def order_key(self) -> tuple[int, datetime, datetime, int]:
        """Sort key of the documented drawdown order."""
        return (self.priority, self.expires_at or _FAR_FUTURE, self.effective_at, self.id)


@dataclass(slots=True)
class AccountState:
    """An account's balance, credit-line use and open lots, as the rules see them."""

    id: int
    customer_key: str
    currency: str
    balance: int
    debt: int
    credit_limit: int
    lots: list[LotState] = field(default_factory=list)

    def spendable(self, at: datetime) -> list[LotState]:
        """Spendable lots in drawdown order."""
        # `LotState.spendable_at`, written out: this runs for every posting of a bulk import.
        lots = [lot for lot in self.lots if lot.remaining > 0 and lot.effective_at <= at
                and (lot.expires_at is None or lot.expires_at > at)]
        if len(lots) > 1:
            lots.sort(key=LotState.order_key)
        return lots

    def available(self, at: datetime) -> int:
        """What a consumption at `at` may take: spendable lots plus unused credit line."""
        return sum(lot.remaining for lot in self.lots if lot.spendable_at(at)) + self.credit_limit - self.debt


@dataclass(slots=True)
class EntryState:
    """The part of a written entry its reversal needs: what it moved, and whether it was reversed already."""

    id: int
    kind: str
    amount: int
    source_system: str | None
    source_id: str | None
    reversed_by: int | None
    allocations: list[tuple[int | None, int]]  # (lot id, or None for the credit line; amount)
    lots: dict[int, LotState]  # every lot the entry moved, as it is now


def draw(lots: list[LotState], amount: int, caps: dict[int, int] | None = None) -> list[tuple[LotState, int]]:
    """Take up to `amount` from `lots` in the given order (optionally capped per lot id)."""
    taken: list[tuple[LotState, int]] = []
    left = amount
    for lot in lots:
        if left <= 0:
            break
        room = lot.remaining if caps is None else min(lot.remaining, caps.get(lot.id, 0))
        take = min(room, left)
        if take > 0:
            taken.append((lot, take))
            left -= take
    return taken


def refundable_caps(state: AccountState, policy: str, at: datetime) -> dict[int, int]:
    """Per lot: how much of it may be refunded at `at` under `policy`.

    Only refundable (paid) lots count. `pro_rata` refunds a lot with a validity window in
    proportion to the unused share of that window (rounded down), never above what remains.
    """
    caps: dict[int, int] = {}
    if policy == "none":
        return caps
    for lot in state.spendable(at):
        if not lot.refundable:
            continue
        cap = lot.remaining
        if policy == "pro_rata" and lot.expires_at is not None:
            total = (lot.expires_at - lot.effective_at).total_seconds()
            unused = max(0.0, (lot.expires_at - at).total_seconds())
            if total > 0:
                cap = min(cap, lot.amount * int(unused) // int(total))
        if cap > 0:
            caps[lot.id] = cap
    return caps


def refund_fee(amount: int, fee_pct: Decimal) -> int:
    """Fee withheld from a refund of `amount` minor units, rounded half-even to a minor unit."""
    fee = (Decimal(amount) * fee_pct / Decimal(100)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return max(0, min(amount, int(fee)))
