"""Per-customer CRM attributes (name, owner, tier, flags, kind) for reports, from a pluggable provider.

The ledger knows money, not people. A report asks a `CustomerAttributes` provider for what the
CRM knows; `NoAttributes` answers nothing, `StaticAttributes` answers from a CSV file, and
`sync_attributes.SyncAttributes` answers from the sync engine's tables (`--connection`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from connector.errors import InvalidInput
from connector.ledger.standing import StandingRules

KINDS = ("unit", "individual")


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    """What the CRM says about one customer; every field is optional."""

    name: str | None = None
    owner: str | None = None
    tier: str | None = None
    flags: tuple[str, ...] = ()
    kind: str | None = None  # "unit" (company) or "individual": picks the cash threshold


class CustomerAttributes(Protocol):
    """Looks up CRM attributes for customer keys; unknown keys are simply left out."""

    def lookup(self, keys: Iterable[str]) -> Mapping[str, CustomerInfo]:
        """Attributes for the keys it knows."""
        ...


def standing_inputs(attributes: object) -> tuple[StandingRules, set[str]]:
    """The standing's rules and orphaned accounts as the provider knows them (the sync state of a
    `--connection` knows both); other providers: the default rules and no orphans."""
    inputs = getattr(attributes, "standing_inputs", None)
    return inputs() if callable(inputs) else (StandingRules(), set())


class NoAttributes:
    """The default provider: knows nothing, so reports group everything under '(none)'."""

    def lookup(self, keys: Iterable[str]) -> Mapping[str, CustomerInfo]:
        """Always empty."""
        return {}


class StaticAttributes:
    """Attributes held in memory, e.g. loaded from a CSV export."""

    def __init__(self, data: Mapping[str, CustomerInfo]) -> None:
        self.data = dict(data)

    def lookup(self, keys: Iterable[str]) -> Mapping[str, CustomerInfo]:
        """The known subset of `keys`."""
        return {k: self.data[k] for k in keys if k in self.data}

    @classmethod
    def from_csv(cls, path: str | Path) -> StaticAttributes:
        """Read `customer,name,owner,tier,flags,kind` (flags separated by ';'; only `customer` required)."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"{path}: attributes file not found", field="attributes")
        data: dict[str, CustomerInfo] = {}
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if "customer" not in header:
                raise InvalidInput(
                    f"{path}, line 1: missing column 'customer' (columns: customer, name, owner, "
                    "tier, flags, kind)", field="customer")
            for row in reader:
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                key = row.get("customer", "")
                if not key:
                    raise InvalidInput(f"{path}, line {reader.line_num}: column customer is empty",
                                       field="customer")
                kind = row.get("kind") or None
                if kind is not None and kind not in KINDS:
                    raise InvalidInput(
                        f"{path}, line {reader.line_num}, customer {key}: kind {kind!r} is not "
                        f"one of {', '.join(KINDS)}", field="kind", customer=key)
                flags = tuple(f.strip() for f in row.get("flags", "").split(";") if f.strip())
                data[key] = CustomerInfo(name=row.get("name") or None, owner=row.get("owner") or None,
                                         tier=row.get("tier") or None, flags=flags, kind=kind)
        return cls(data)
