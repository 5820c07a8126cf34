"""The mapping file as pydantic v2 models: entities, field transforms and ownership, write-back, rules."""

from __future__ import annotations

import string
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from connector import money
from connector.domain import STREAMS, Stream
from connector.errors import InvalidInput

FieldType = Literal["text", "decimal", "money", "integer", "date", "datetime", "picklist", "boolean",
                    "lookup"]
DERIVED = ("balance", "available", "tier", "flags", "runway_days", "reconciled_at", "points",
           "lifetime_prepaid")
FLAGS = ("overdue", "amount_mismatch", "low_balance", "negative", "expiring_soon", "expired", "dormant",
         "duplicate_payment", "manual_edit", "orphaned", "payment_changed", "payment_deleted")
METRICS = ("lifetime_prepaid", "balance", "consumed", "available")
TEMPLATE_VARS = ("customer", "customer_id", "flag", "detail", "balance", "currency", "tier", "runway_days",
                 "owner")
_ATTRS = {name: set(s.model.model_fields) for name, s in STREAMS.items()}
_BASE = {"crm", "module", "crm_id", "modified_at", "owner_id", "fields", "entity"}


def _money_text(value: object) -> object:
    """A money value in a mapping file: quoted text in the one amount grammar (`connector.money`).

    YAML turns unquoted `1_000` into 1000, `1:30` into 90 and `0.1` into a float, so an unquoted
    number cannot be read exactly as written: it is refused with the fix (quote it).
    """
    if isinstance(value, Decimal):
        return value  # already read (a model built in code, or copied)
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(
            f"{value!r} was read as a YAML {type(value).__name__}, not as text; write amounts in quotes "
            f"so they are read exactly as written, e.g. \"100.00\"")
    try:
        return money.read_text(value, money.MAX_DECIMALS, allow_zero=True)
    except InvalidInput as exc:
        raise ValueError(exc.message.removeprefix("amount: ")) from None


Money = Annotated[Decimal, BeforeValidator(_money_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMap(_Strict):
    """One CRM field: its API name, type transform, picklist value map, owner and zone."""

    crm: str = Field(min_length=1)
    type: FieldType = "text"
    owner: Literal["crm", "connector"] = "crm"
    values: dict[str, str] = Field(default_factory=dict)
    timezone: str | None = None

    def to_crm(self, value: str) -> str:
        """Our picklist value -> the CRM's (identity when unmapped)."""
        return self.values.get(value, value)

    def from_crm(self, value: str) -> str:
        """The CRM's picklist value -> ours (`values` maps ours to theirs)."""
        back = {v: k for k, v in self.values.items()}
        return back.get(value, value)


class EntityMap(_Strict):
    """Where one entity lives and which CRM field holds each domain attribute."""

    module: str = Field(min_length=1)
    match_key: str | None = Field(default=None, description="the CRM record id field ('id' on Zoho, '_id' on "
                                  "Fxiaoke), the only key records are matched by; unset means the same")
    fields: dict[str, FieldMap] = Field(default_factory=dict)
    extra: dict[str, FieldMap] = Field(default_factory=dict)
    post_statuses: tuple[str, ...] = ()


class TierLevel(_Strict):
    """A tier and the minimum each metric must reach (all must hold)."""

    name: str = Field(min_length=1)
    min: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("min", mode="before")
    @classmethod
    def _metrics(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out = {}
        for key, amount in value.items():
            if key not in METRICS and not str(key).startswith("field:"):
                raise ValueError(
                    f"unknown metric {key!r}; use one of {', '.join(METRICS)} or field:<extra name>")
            try:  # the money metrics hold amounts; `field:` metrics compare a CRM field's own number
                out[key] = _money_text(amount) if key in METRICS else amount
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return out


class Tiers(_Strict):
    """Tier levels, lowest first, with hysteresis so a customer at a boundary does not flip each run."""

    hysteresis_pct: Decimal = Field(default=Decimal(5), ge=0, le=50)
    consumed_window_days: int = Field(default=90, ge=1)
    levels: list[TierLevel] = Field(min_length=1)


class Rules(_Strict):
    """Flag thresholds, as data."""

    low_balance_amount: Money = Field(default=Decimal(100), ge=0)
    use_contract_threshold: bool = True
    expiring_soon_days: int = Field(default=30, ge=0)
    dormant_days: int = Field(default=90, ge=1)
    duplicate_window_days: int = Field(default=3, ge=0)
    overdue_grace_days: int = Field(default=0, ge=0)
    mismatch_tolerance: Money = Field(default=Decimal(0), ge=0)
    event_flag_days: int = Field(default=14, ge=1)
    runway_window_days: int = Field(default=30, ge=1)


class Points(_Strict):
    """Reward points earned per unit of money prepaid and consumed."""

    per_prepaid_unit: Decimal = Field(default=Decimal(0), ge=0)
    per_consumed_unit: Decimal = Field(default=Decimal(0), ge=0)


class TaskRule(_Strict):
    """Which flag opens a task, what it says, when it is due, who gets it."""

    flag: str
    subject: str = Field(min_length=1)
    description: str = ""
    due_in_days: int = Field(default=3, ge=0)
    assignee: str = "owner"
    priority: str | None = None
    close_when_cleared: bool = True

    @field_validator("flag")
    @classmethod
    def _flag(cls, value: str) -> str:
        if value not in FLAGS:
            raise ValueError(f"unknown flag {value!r}")
        return value

    @field_validator("assignee")
    @classmethod
    def _assignee(cls, value: str) -> str:
        if value != "owner" and not value.startswith("user:"):
            raise ValueError("assignee must be 'owner' or 'user:<CRM user id>'")
        return value

    @field_validator("subject", "description")
    @classmethod
    def _template(cls, value: str) -> str:
        for _text, name, _spec, _conv in string.Formatter().parse(value):
            if name is not None and name not in TEMPLATE_VARS:
                raise ValueError(f"unknown placeholder '{name}'; use one of {', '.join(TEMPLATE_VARS)}")
        return value


class Tasks(_Strict):
    """Task rules; `target` names the Fxiaoke object that holds tasks (Zoho uses Tasks)."""

    target: str | None = None
    rules: list[TaskRule] = Field(default_factory=list)


class Mapping(_Strict):
    """A whole mapping file."""

    crm: Literal["zoho", "fxiaoke"]
    version: Literal[1] = 1
    currency: str | None = None
    write_batch_size: int = Field(default=100, ge=1, le=100)
    lot_expiry: Literal["valid_until",
                        "none"] = "none"  # does a contract's validity end expire the lots it funds?
    customers: EntityMap
    contracts: EntityMap
    payments: EntityMap
    consumption: EntityMap | None = None
    prepayment: EntityMap | None = None
    write_back: dict[str, FieldMap]
    rules: Rules = Field(default_factory=Rules)
    tiers: Tiers
    points: Points | None = None
    tasks: Tasks = Field(default_factory=Tasks)

    def sections(self) -> list[tuple[Stream, EntityMap]]:
        """The mapped streams in the order a run reads them, each with its section of this file."""
        return [(s, emap) for s in STREAMS.values() if (emap := getattr(self, s.name)) is not None]

    @field_validator("write_back")
    @classmethod
    def _derived(cls, value: dict[str, FieldMap]) -> dict[str, FieldMap]:
        for key in value:
            if key not in DERIVED:
                raise ValueError(f"unknown write-back value {key!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Mapping:
        record_id = {"zoho": "id", "fxiaoke": "_id"}[self.crm]
        for stream, emap in self.sections():
            section = stream.name
            if emap.match_key not in (None, record_id):
                # Records are matched across runs (and keyed in the ledger) by the CRM's record id; a
                # business key such as an account number is not supported, so say so instead of ignoring it.
                raise ValueError(
                    f"{section}.match_key: only the {self.crm} record id ({record_id!r}) is supported, "
                    f"not {emap.match_key!r}; map a business key under `extra` to keep it")
        for stream, emap in self.sections():
            section = stream.name
            if section == "consumption":  # unchecked, as before: a check could refuse files that load today
                continue
            if section == "prepayment" and not {"customer_id", "balance"} <= set(emap.fields):
                raise ValueError("prepayment.fields: map both customer_id and balance (the CRM's native "
                                 "prepayment balance compared with the ledger)")
            for attr in emap.fields:
                if attr not in _ATTRS[section] - _BASE:
                    raise ValueError(f"{section}.fields: unknown attribute {attr!r}")
            for name, fmap in {**emap.fields, **emap.extra}.items():
                if fmap.owner != "crm":
                    raise ValueError(f"{section}.fields.{name}: pulled fields are CRM-owned (owner: crm)")
        for name, fmap in self.write_back.items():
            if fmap.owner != "connector":
                raise ValueError(
                    f"write_back.{name}: written fields must be connector-owned (owner: connector)")
        if self.currency is not None and self.currency.upper() in money.MINOR_UNITS:
            places = money.exponent(self.currency)
            amounts = {"rules.low_balance_amount": self.rules.low_balance_amount,
                       "rules.mismatch_tolerance": self.rules.mismatch_tolerance,
                       **{f"tiers.levels[{i}].min.{k}": v for i, level in enumerate(self.tiers.levels)
                          for k, v in level.min.items() if k in METRICS}}
            for where, amount in amounts.items():
                if amount != amount.quantize(Decimal(1).scaleb(-places)):
                    raise ValueError(
                        f"{where}: {amount} has more than {places} decimal places for {self.currency}")
        if "tier" in self.write_back:
            names = {level.name for level in self.tiers.levels}
            missing = names - set(self.write_back["tier"].values)
            if self.write_back["tier"].type == "picklist" and missing:
                raise ValueError(
                    f"write_back.tier.values: no CRM value for tier(s) {', '.join(sorted(missing))}")
        return self
