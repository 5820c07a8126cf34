"""Compliance rules as data: the `[compliance]` table of `prepaid-sync.toml` (defaults: China's rules).

Looked up in order: an explicit path, `$PREPAID_SYNC_CONFIG`, `./prepaid-sync.toml`; a file
without a `[compliance]` table, or no file at all, means the defaults below. Money thresholds
and ratios are decimal strings (or integers); floats are refused, as everywhere for money.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from connector.errors import ConfigError, InvalidInput
from connector.money import currency_code, parse_amount

ENV = "PREPAID_SYNC_CONFIG"
DEFAULT_FILE = "prepaid-sync.toml"
# 单用途商业预付卡管理办法: custody of the previous quarter's outstanding balance by issuer class.
ISSUER_RATIOS = {"scale": Decimal("0.20"), "group": Decimal("0.30"), "brand": Decimal("0.40")}


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(f"write {value!r} as a string (e.g. \"{value}\"): floats are not exact")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Exact = Annotated[Decimal, BeforeValidator(_no_float)]


class ComplianceRules(BaseModel):
    """The rules in force; every field has a documented default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accept_prepayments: bool = True
    stop_reason: str = ""
    issuer_class: Literal["scale", "group", "brand"] | None = None
    custody_ratio: Exact | None = None
    real_name_threshold: dict[str, Exact] = {"CNY": Decimal("10000")}
    cash_threshold_unit: dict[str, Exact] = {"CNY": Decimal("5000")}
    cash_threshold_individual: dict[str, Exact] = {"CNY": Decimal("50000")}
    forbid_forfeiture: bool = True
    discount_at_paid_price: bool = True
    max_refund_fee_pct: Exact | None = None
    source: str = "built-in defaults"

    @field_validator("real_name_threshold", "cash_threshold_unit", "cash_threshold_individual", mode="before")
    @classmethod
    def _amounts(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for code, amount in value.items():  # as written in the file: the one amount grammar (connector.money)
            try:
                cur = currency_code(code)
                out[cur] = parse_amount(amount, cur, field=code)
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        return out

    @field_validator("custody_ratio")
    @classmethod
    def _ratio(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not Decimal(0) < value <= Decimal(1):
            raise ValueError("must be above 0 and at most 1 (e.g. \"0.20\" for 20%)")
        return value

    @field_validator("max_refund_fee_pct")
    @classmethod
    def _pct(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not Decimal(0) <= value <= Decimal(100):
            raise ValueError("must be between 0 and 100")
        return value

    @property
    def ratio(self) -> Decimal | None:
        """The custody ratio: `custody_ratio`, else the issuer class's, else None."""
        if self.custody_ratio is not None:
            return self.custody_ratio
        return ISSUER_RATIOS[self.issuer_class] if self.issuer_class else None


def config_path(path: str | Path | None = None) -> Path | None:
    """The configuration file in force, or None for the defaults."""
    if path:
        return Path(path)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load_rules(path: str | Path | None = None) -> ComplianceRules:
    """Read the `[compliance]` table; errors name the file, the field and the reason."""
    file = config_path(path)
    if file is None:
        return ComplianceRules()
    if not file.is_file():
        raise ConfigError(f"{file}: configuration file not found", field="config")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}", field="config") from None
    section = data.get("compliance", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: [compliance] must be a table", field="compliance")
    try:
        return ComplianceRules(**section, source=str(file))
    except ValidationError as exc:
        problems = "; ".join(f"[compliance].{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{file}: {problems}", field="compliance") from None
