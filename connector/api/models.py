"""Request bodies and answers of the ledger API (pydantic; the OpenAPI document is generated from them).

Money is a decimal string in both directions (`"10.00"`); a JSON number is refused for an amount
(floats are not exact), and the string is read by the one money grammar (`connector.money`).
Times are ISO 8601 text, read the way the CLI reads them (`connector.timeutil.parse_datetime`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_BATCH = 1000
Money = str


def _money_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError('give money as a decimal string such as "10.00", never a JSON number '
                         "(floats are not exact)")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsumptionBody(_Body):
    """A consumption (or a refund): the amount and currency, and the CLI's options."""

    amount: Money = Field(description='Positive decimal string in the currency\'s minor unit, e.g. "10.00".',
                          examples=["10.00"])
    currency: str = Field(description="ISO 4217 code, e.g. CNY.", examples=["CNY"])
    effective_at: str | None = Field(None, description="Business time (ISO 8601); default now. May be "
                                     "backdated, not post-dated.")
    source: str | None = Field(None, description="Source reference SYSTEM:RECORD_ID.",
                               examples=["shop:o-991"])
    memo: str = Field("", description="Why; shown on statements. Not part of the idempotency check.")

    _amount = field_validator("amount", mode="before")(_money_text)


class RefundBody(ConsumptionBody):
    """A refund under the customer's refund policy."""


class DepositBody(ConsumptionBody):
    """A deposit: a new lot, with its expiry, refundability and drawdown priority."""

    expires_at: str | None = Field(None, description="Expiry: a date (usable through that day, UTC) or a "
                                   "date-time; none = never expires.")
    refundable: bool = Field(True, description="false: money that may never be paid out.")
    priority: int = Field(50, ge=0, le=1000, description="Drawdown priority; lower is used first.")


class BatchItem(ConsumptionBody):
    """One consumption of a batch, with its own customer and idempotency key."""

    customer: str = Field(description="Customer key.")
    idempotency_key: str = Field(description="This item's Idempotency-Key (permanent).")


class BatchBody(_Body):
    """Up to 1,000 consumptions, posted in one transaction, each answered on its own."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class Allocation(BaseModel):
    """How much an entry moved one lot (`lot_id` null: the credit line)."""

    lot_id: int | None
    amount: Money


class PostedEntry(BaseModel):
    """An entry a posting wrote."""

    id: int
    kind: str
    amount: Money
    balance_after: Money
    effective_at: str
    lot_id: int | None = None
    allocations: list[Allocation]


class PostingAnswer(BaseModel):
    """What a posting wrote, and the balance right after it; a replay answers the same document."""

    op: str
    customer: str
    currency: str
    amount: Money
    balance: Money = Field(description="The account's balance right after this posting.")
    idempotency_key: str
    entries: list[PostedEntry]
    payout: Money | None = Field(None, description="Refunds: what is paid out.")
    fee: Money | None = Field(None, description="Refunds: the fee withheld.")
    policy: str | None = Field(None, description="Refunds: the refund policy applied.")


class BalanceAnswer(BaseModel):
    """A customer's balance in one currency, now or as of a time."""

    customer: str
    currency: str
    balance: Money
    available: Money | None = Field(None, description="What a consumption may take now (lots effective and "
                                    "not expired, plus unused credit line); null for a past balance.")
    credit_limit: Money | None = None
    credit_used: Money | None = None
    as_of: str | None = None


class BatchResult(BaseModel):
    """One batch item's outcome: `created`, `replayed` or `refused` (with its problem)."""

    index: int
    idempotency_key: str
    outcome: Literal["created", "replayed", "refused"]
    status: int = Field(description="The HTTP status the item would get on its own (201, 409, 422, ...).")
    result: PostingAnswer | None = None
    problem: dict[str, Any] | None = None


class BatchAnswer(BaseModel):
    """Per-item results, in the order of the items."""

    created: int
    replayed: int
    refused: int
    results: list[BatchResult]


class LedgerEntry(BaseModel):
    """One entry of a customer's ledger."""

    id: int
    currency: str
    kind: str
    amount: Money
    balance_after: Money
    effective_at: str
    recorded_at: str
    idempotency_key: str = Field(description="The posting key (API postings read `api:<Idempotency-Key>`).")
    source: str | None = None
    memo: str = ""
    reverses: int | None = None


class EntryPage(BaseModel):
    """A page of entries in recording order; `next_cursor` fetches the next page (null: no more)."""

    data: list[LedgerEntry]
    next_cursor: str | None


class AccountBalance(BaseModel):
    """One account of a customer."""

    currency: str
    balance: Money


class CustomerHit(BaseModel):
    """A customer found by name or key, with what the CRM sync knows of it."""

    customer: str
    name: str | None = None
    connection: str | None = None
    tier: str | None = None
    flags: list[str] = Field(default_factory=list)
    accounts: list[AccountBalance] = Field(default_factory=list)


class CustomerList(BaseModel):
    """Customers matching a search."""

    data: list[CustomerHit]


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    database: str | None = None
    revision: str | None = None
    head: str | None = None
