"""Customer search for the API: ledger keys, and the CRM names, tiers and open flags the sync keeps.

A ledger key of a synced customer is `<crm>:<customers module>:<crm id>` (see
`connector.reports.sync_attributes`); each configured connection's mapping gives that prefix, so a
`sync_customers` row (by connection and CRM id) and its open `sync_flags` (by ledger key) meet the
ledger's accounts. Without a config file (or connections) the search covers ledger keys only.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select

from connector.config import locate_config, load_settings
from connector.errors import ConnectorError
from connector.ledger.store import accounts
from connector.mapping import load_mapping
from connector.money import fmt
from connector.reports.attributes import CustomerInfo
from connector.sync import tables as t

log = logging.getLogger(__name__)


@dataclass
class Hit:
    """One customer found: its key, CRM facts and balances."""

    customer: str
    name: str | None = None
    connection: str | None = None
    tier: str | None = None
    flags: list[str] = field(default_factory=list)
    accounts: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


class Directory:
    """Finds customers by (part of) their name or key."""

    def __init__(self, engine: Engine, config: str | Path | None = None) -> None:
        self.engine = engine
        self.config = config
        self._prefixes: list[tuple[str, str]] | None = None
        self._lock = threading.Lock()

    def prefixes(self) -> list[tuple[str, str]]:
        """(connection, ledger key prefix) of every configured connection whose mapping loads."""
        with self._lock:
            if self._prefixes is None:
                self._prefixes = _load_prefixes(self.config)
            return self._prefixes

    def search(self, query: str, limit: int) -> list[Hit]:
        """Customers whose key, CRM name or CRM id contains `query` (case-insensitive), in key order."""
        needle = query.strip().lower()
        prefixes = self.prefixes()
        by_conn = dict(prefixes)
        c = t.customers
        with self.engine.connect() as conn:
            keys = set(conn.execute(
                select(accounts.c.customer_key).distinct()
                .where(func.lower(accounts.c.customer_key).contains(needle, autoescape=True))
                .order_by(accounts.c.customer_key).limit(limit)).scalars())
            if by_conn:
                rows = conn.execute(
                    select(c.c.connection, c.c.crm_id).where(
                        c.c.connection.in_(list(by_conn)), c.c.deleted_at.is_(None),
                        or_(func.lower(c.c.name).contains(needle, autoescape=True),
                            c.c.crm_id == query.strip()))
                    .order_by(c.c.name).limit(limit)).all()
                keys.update(by_conn[r.connection] + r.crm_id for r in rows)
            chosen = sorted(keys)[:limit]
            return self._describe(conn, chosen, prefixes)

    def lookup(self, keys: Iterable[str]) -> Mapping[str, CustomerInfo]:
        """`CustomerAttributes` for statements: name, tier and open flags of the keys the sync knows."""
        with self.engine.connect() as conn:
            hits = self._describe(conn, sorted(set(keys)), self.prefixes())
        return {h.customer: CustomerInfo(name=h.name, tier=h.tier, flags=tuple(h.flags))
                for h in hits if h.connection is not None}

    def _describe(self, conn: Any, keys: list[str], prefixes: list[tuple[str, str]]) -> list[Hit]:
        hits = {k: Hit(k) for k in keys}
        if not keys:
            return []
        for key, cur, balance in conn.execute(
                select(accounts.c.customer_key, accounts.c.currency, accounts.c.balance)
                .where(accounts.c.customer_key.in_(keys))
                .order_by(accounts.c.customer_key, accounts.c.currency)):
            hits[key].accounts.append({"currency": cur, "balance": fmt(balance, cur)})
        wanted: dict[tuple[str, str], str] = {}
        for key in keys:
            for connection, prefix in prefixes:
                if key.startswith(prefix) and len(key) > len(prefix):
                    wanted[(connection, key[len(prefix):])] = key
        if wanted:
            c = t.customers
            for row in conn.execute(select(c.c.connection, c.c.crm_id, c.c.name, c.c.tier).where(
                    c.c.connection.in_({w[0] for w in wanted}), c.c.crm_id.in_({w[1] for w in wanted}))):
                key = wanted.get((row.connection, row.crm_id))
                if key is not None:
                    hits[key].name, hits[key].tier, hits[key].connection = row.name, row.tier, row.connection
            flags: dict[str, set[str]] = defaultdict(set)
            for row in conn.execute(select(t.flags.c.customer_id, t.flags.c.code).where(
                    t.flags.c.customer_id.in_(keys), t.flags.c.cleared_at.is_(None))):
                flags[row.customer_id].add(row.code)
            for key, codes in flags.items():
                hits[key].flags = sorted(codes)
        return [hits[k] for k in keys]


def _load_prefixes(config: str | Path | None) -> list[tuple[str, str]]:
    try:
        if locate_config(config) is None:
            return []
        loaded = load_settings(config)
    except ConnectorError as exc:
        log.warning("customer search covers ledger keys only: %s", exc)
        return []
    out = []
    for name, conn in loaded.settings.connections.items():
        try:
            mapping = load_mapping(loaded.mapping_path(conn))
        except ConnectorError as exc:
            log.warning("customer search leaves out connection %s: %s", name, exc)
            continue
        out.append((name, f"{mapping.crm}:{mapping.customers.module}:"))
    return out
