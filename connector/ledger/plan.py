"""What one posting will write: entries, their lot allocations and new lots, before any SQL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.ledger.rules import AccountState, LotState


@dataclass(slots=True)
class NewLot:
    """A lot created by the entry that carries it."""

    amount: int
    effective_at: datetime
    expires_at: datetime | None
    refundable: bool
    priority: int
    source_system: str | None = None
    source_id: str | None = None
    state: LotState | None = None  # set once written, so later plans can draw from it


LotRef = LotState | NewLot | None  # None: the account's credit line


@dataclass(slots=True)
class PlannedEntry:
    """One entry to write and how it moves lots."""

    kind: str
    amount: int
    effective_at: datetime
    allocations: list[tuple[LotRef, int]] = field(default_factory=list)
    new_lot: NewLot | None = None
    memo: str = ""
    source_system: str | None = None
    source_id: str | None = None
    reverses_id: int | None = None


@dataclass(slots=True)
class Plan:
    """All entries of one posting (one idempotency key)."""

    op: str
    key: str
    payload_hash: str
    account: AccountState
    entries: list[PlannedEntry]
    extra: dict[str, Any] = field(default_factory=dict)


def payload_hash(op: str, payload: dict[str, Any]) -> str:
    """A stable hash of what a posting asks for; the idempotency check compares these.

    The canonical form is `op` then `name=value` pairs in name order, values as `str()`
    (datetimes in ISO form, None as empty), joined by a unit separator.
    """
    parts = [op]
    for name in sorted(payload):
        value = payload[name]
        parts.append(
            f"{name}={'' if value is None else value.isoformat() if isinstance(value, datetime) else value}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
