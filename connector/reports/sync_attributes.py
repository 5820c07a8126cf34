"""`SyncAttributes`: CRM attributes for reports from the sync engine's tables of one connection.

Ledger customer keys are `<crm>:<customers module>:<crm id>` (as `Ctx.customer_key` builds them);
`sync_customers` holds name, owner id, tier and the fields read back per CRM id, and `sync_flags`
holds flags by ledger key. Only open flags (not cleared) count. The values are the state after the
last sync run, not as of a report's `--as-of`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from connector.config import choose_database, load_settings
from connector.errors import ConfigError, InvalidInput
from connector.db.engine import make_engine
from connector.ledger.standing import StandingRules
from connector.mapping import load_mapping
from connector.mapping.models import Mapping as SyncMapping
from connector.reports.attributes import KINDS, CustomerInfo
from connector.sync import tables as t
from connector.sync.orphans import orphaned_keys


class SyncAttributes:
    """Name, owner (CRM user id), tier, open flags and kind per customer, read from sync state."""

    def __init__(self, engine: Engine, connection: str, mapping: SyncMapping) -> None:
        self.engine = engine
        self.connection = connection
        self.mapping = mapping
        self.prefix = f"{mapping.crm}:{mapping.customers.module}:"
        self._data: dict[str, CustomerInfo] | None = None

    def key(self, crm_id: str) -> str:
        """The ledger customer key of a CRM customer id."""
        return self.prefix + crm_id

    def crm_id(self, key: str) -> str | None:
        """The CRM customer id of a ledger key, or None when the key belongs to another CRM or module."""
        return key[len(self.prefix):] if key.startswith(self.prefix) and len(key) > len(self.prefix) else None

    def lookup(self, keys: Iterable[str]) -> Mapping[str, CustomerInfo]:
        """Attributes for the keys this connection's customers own; others are left out."""
        data = self._load()
        return {k: data[k] for k in keys if k in data}

    def standing_inputs(self) -> tuple[StandingRules, set[str]]:
        """The mapping's standing rules and this connection's orphaned accounts, as the sync uses them."""
        rules = StandingRules(self.mapping.rules.overdue_grace_days, self.mapping.rules.expiring_soon_days)
        with self.engine.connect() as conn:
            return rules, orphaned_keys(conn, self.connection, self.prefix)

    def _load(self) -> dict[str, CustomerInfo]:
        if self._data is not None:
            return self._data
        c = self.connection
        with self.engine.connect() as conn:
            customers = conn.execute(
                select(t.customers.c.crm_id, t.customers.c.name, t.customers.c.owner_id,
                       t.customers.c.owner_name, t.customers.c.tier,
                       t.customers.c.fields).where(t.customers.c.connection == c)).all()
            flags = conn.execute(select(t.flags.c.customer_id, t.flags.c.code)
                                 .where(t.flags.c.connection == c, t.flags.c.cleared_at.is_(None))).all()
        open_flags: dict[str, set[str]] = defaultdict(set)
        for row in flags:
            open_flags[row.customer_id].add(row.code)
        data: dict[str, CustomerInfo] = {}
        for row in customers:
            key = self.key(row.crm_id)
            fields = _fields(row.fields)
            data[key] = CustomerInfo(name=row.name or self._field(fields, "name"), owner=row.owner_name or
                                     row.owner_id or None, tier=row.tier or None,
                                     flags=tuple(sorted(open_flags.get(key, ()))), kind=self._kind(fields))
        self._data = data
        return data

    def _field(self, fields: dict[str, Any], name: str) -> str | None:
        fmap = self.mapping.customers.fields.get(name) or self.mapping.customers.extra.get(name)
        value = fields.get(fmap.crm) if fmap else None
        return str(value) if value not in (None, "") else None

    def _kind(self, fields: dict[str, Any]) -> str | None:
        fmap = self.mapping.customers.extra.get("kind")
        raw = self._field(fields, "kind")
        if fmap is None or raw is None:
            return None
        kind = fmap.from_crm(raw)
        return kind if kind in KINDS else None


def for_connection(name: str, config: str | Path | None = None,
                   engine: Engine | None = None) -> SyncAttributes:
    """The provider of a configured connection, on `engine` (default: the database `choose_database`
    picks)."""
    if not name.strip():
        raise InvalidInput("--connection needs a connection name from the config", field="connection")
    loaded = load_settings(config)
    conn_name, conn = loaded.settings.connection(name)  # an unknown name raises, listing the known ones
    mapping = load_mapping(loaded.mapping_path(conn))
    if mapping.crm != conn.crm:
        raise ConfigError(f"connection {conn_name!r} is {conn.crm} but its mapping is for {mapping.crm}",
                          field="mapping")
    return SyncAttributes(engine or make_engine(choose_database(None, loaded.path).url), conn_name, mapping)


def _fields(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
