"""Ledger tables (SQLModel). Money is stored as integer minor units of the account's currency.

`entries`, `allocations` and `postings` are append-only: database triggers refuse UPDATE and
DELETE on them (see the initial migration). `accounts.balance`, `accounts.debt` and
`lots.remaining` are caches that `verify` recomputes from entries and allocations.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Column, Date, ForeignKey, Index, Integer, \
    String, Text, UniqueConstraint
from sqlalchemy.sql.expression import true
from sqlmodel import Field, SQLModel

from connector.db.types import UTCDateTime

ENTRY_KINDS = ("deposit", "consume", "refund", "refund_fee", "expire", "adjust", "reverse")


def _money(**kw: object) -> object:
    return Field(sa_column=Column(BigInteger, nullable=False, **kw))  # type: ignore[arg-type]


class Account(SQLModel, table=True):
    """One customer's prepaid money in one currency."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("customer_key", "currency", name="uq_accounts_customer_currency"),
        CheckConstraint("debt >= 0", name="ck_accounts_debt_nonneg"),
        CheckConstraint("credit_limit >= 0", name="ck_accounts_credit_limit_nonneg"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_key: str = Field(sa_column=Column(String(255), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    balance: int = _money(default=0)  # type: ignore[assignment]
    debt: int = _money(default=0)  # type: ignore[assignment]
    credit_limit: int = _money(default=0)  # type: ignore[assignment]
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class Lot(SQLModel, table=True):
    """Money from one deposit (or positive adjustment), drawn down in a documented order."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_lots_amount_pos"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="ck_lots_remaining_range"),
        Index("ix_lots_account", "account_id"),
        Index("ix_lots_expiry", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    entry_id: int = Field(sa_column=Column(Integer, ForeignKey("entries.id"), nullable=False, unique=True))
    amount: int = _money()  # type: ignore[assignment]
    remaining: int = _money()  # type: ignore[assignment]
    effective_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    refundable: bool = Field(default=True, nullable=False)
    priority: int = Field(default=50, nullable=False)
    source_system: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    source_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))


class Entry(SQLModel, table=True):
    """One immutable change to an account's balance."""

    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_entries_amount_nonzero"),
        CheckConstraint("kind IN ('" + "','".join(ENTRY_KINDS) + "')", name="ck_entries_kind"),
        Index("ix_entries_account_effective", "account_id", "effective_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    amount: int = _money()  # type: ignore[assignment]
    balance_after: int = _money()  # type: ignore[assignment]
    effective_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    posting_key: str = Field(sa_column=Column(String(255), ForeignKey("postings.key"), nullable=False))
    source_system: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    source_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    memo: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    reverses_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("entries.id"), nullable=True, unique=True))


class Allocation(SQLModel, table=True):
    """How much of an entry moved which lot (lot_id NULL: the credit line)."""

    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_entry", "entry_id"),)  # a lot's: via its account's entries

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(sa_column=Column(Integer, ForeignKey("entries.id"), nullable=False))
    lot_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("lots.id"), nullable=True))
    amount: int = _money()  # type: ignore[assignment]


class Posting(SQLModel, table=True):
    """A permanent idempotency record: key, what was asked (hash) and what was answered.

    `first_entry_id`..`last_entry_id` bound the ids of the posting's entries (a replay reads them by
    primary key; entries has no index on `posting_key`). On SQLite the table is WITHOUT ROWID.
    """

    __tablename__ = "postings"
    __table_args__ = {"sqlite_with_rowid": False}

    key: str = Field(sa_column=Column(String(255), primary_key=True))
    op: str = Field(sa_column=Column(String(16), nullable=False))
    payload_hash: str = Field(sa_column=Column(String(64), nullable=False))
    customer_key: str = Field(sa_column=Column(String(255), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    result: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    first_entry_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    last_entry_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class Terms(SQLModel, table=True):
    """Prepayment terms for a customer (contract_ref '') or one of its contracts."""

    __tablename__ = "terms"
    __table_args__ = (UniqueConstraint("customer_key", "currency", "contract_ref", name="uq_terms_scope"),
                      CheckConstraint("refund_policy IN ('full','pro_rata','none','fee')",
                                      name="ck_terms_refund_policy"))

    id: int | None = Field(default=None, primary_key=True)
    customer_key: str = Field(sa_column=Column(String(255), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    contract_ref: str = Field(default="", sa_column=Column(String(255), nullable=False, default=""))
    agreed_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    due_date: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    valid_from: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    valid_until: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    refund_policy: str = Field(default="full", sa_column=Column(String(16), nullable=False, default="full"))
    refund_fee_pct: str = Field(default="0", sa_column=Column(String(16), nullable=False, default="0"))
    credit_limit: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    low_balance_threshold: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True,
                                                          server_default=true()))  # live contract (not ended)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
