"""Vendor-neutral records that cross the adapter boundary.

Adapters turn vendor JSON into these models; the sync engine and the ledger never see vendor
JSON. Money is `Decimal` already quantized to the record's currency; times are timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Entity(StrEnum):
    """The kinds of CRM records prepaid-sync reads."""

    CUSTOMER = "customer"
    CONTRACT = "contract"
    PAYMENT = "payment"
    CONSUMPTION = "consumption"
    PREPAYMENT = "prepayment"  # native prepayment balance objects (Fxiaoke CustomerAccountObj)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    crm: str = Field(description="CRM kind, e.g. 'zoho' or 'fxiaoke'")
    module: str = Field(description="CRM module/object API name, e.g. 'Accounts' or 'AccountObj'")
    crm_id: str
    modified_at: datetime
    owner_id: str | None = None
    owner_name: str | None = Field(default=None,
                                   description="the owner's display name, when the CRM sends it")
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="extra mapped CRM fields, by CRM API name")

    @property
    def key(self) -> str:
        """Stable opaque key, e.g. `zoho:Accounts:4876876000000123`."""
        return f"{self.crm}:{self.module}:{self.crm_id}"


class Customer(_Record):
    """A CRM account/customer whose prepaid money the ledger keeps."""

    entity: Literal[Entity.CUSTOMER] = Entity.CUSTOMER
    name: str
    currency: str | None = None


class Contract(_Record):
    """Prepayment terms agreed with a customer (a Zoho Deal/custom module, a Fxiaoke ContractObj)."""

    entity: Literal[Entity.CONTRACT] = Entity.CONTRACT
    customer_id: str | None
    name: str | None = None
    currency: str | None = None
    prepay_amount: Decimal | None = None
    due_date: date | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    refund_policy: str | None = None
    refund_fee_pct: Decimal | None = None
    credit_limit: Decimal | None = None
    low_balance_threshold: Decimal | None = None
    status: str | None = None


class Payment(_Record):
    """Money received from a customer (a 回款 / payment record)."""

    entity: Literal[Entity.PAYMENT] = Entity.PAYMENT
    customer_id: str | None
    contract_id: str | None = None
    amount: Decimal
    currency: str | None = None
    paid_at: datetime | date | None = None
    status: str | None = None
    method: str | None = None


class Consumption(_Record):
    """Usage drawn from the prepaid balance, when the CRM records it."""

    entity: Literal[Entity.CONSUMPTION] = Entity.CONSUMPTION
    customer_id: str | None
    amount: Decimal
    currency: str | None = None
    used_at: datetime | date | None = None


class PrepaymentBalance(_Record):
    """A CRM-native prepayment balance (Fxiaoke 客户账户), for reconciliation against the ledger."""

    entity: Literal[Entity.PREPAYMENT] = Entity.PREPAYMENT
    customer_id: str | None
    balance: Decimal
    currency: str | None = None


class Deletion(BaseModel):
    """A record deleted (or invalidated) in the CRM since the cursor."""

    model_config = ConfigDict(frozen=True)

    crm: str
    module: str
    entity: Entity
    crm_id: str
    deleted_at: datetime

    @property
    def key(self) -> str:
        """Same key shape as the live record had."""
        return f"{self.crm}:{self.module}:{self.crm_id}"


Record = Customer | Contract | Payment | Consumption | PrepaymentBalance


@dataclass(frozen=True)
class Stream:
    """One kind of CRM record, as every layer names it.

    `name` is both the stream (its cursor, its report counts) and the mapping file's section;
    `item_kind` is its kind in the shared items table, None when it has a table of its own.
    """

    name: str
    entity: Entity
    model: type[Record]
    item_kind: str | None = None


# The streams in the order a run reads them: the one table of stream <-> entity <-> mapping section.
STREAMS: dict[str, Stream] = {s.name: s for s in (
    Stream("customers", Entity.CUSTOMER, Customer),
    Stream("contracts", Entity.CONTRACT, Contract),
    Stream("payments", Entity.PAYMENT, Payment, item_kind="payment"),
    Stream("consumption", Entity.CONSUMPTION, Consumption, item_kind="consumption"),
    Stream("prepayment", Entity.PREPAYMENT, PrepaymentBalance, item_kind="prepayment"),
)}
BY_ENTITY: dict[Entity, Stream] = {s.entity: s for s in STREAMS.values()}
