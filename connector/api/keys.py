"""API keys: created once and shown once, stored as a hash, checked in constant time, revocable.

A key reads `ps_live_<key id>_<secret>`. The key id (12 hex digits) is public: it finds the row and
appears in `apikey list`. The secret is 32 random bytes (URL-safe base64); only its SHA-256 is stored,
which suits a high-entropy random secret (a password would need a slow hash; this is not one). A
request's key is hashed and compared with `hmac.compare_digest`. The last-used time is written at most
once per `TOUCH_EVERY` per key and process, never once per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from connector import visible
from connector.api.tables import api_keys
from connector.db.engine import write_transaction
from connector.errors import InvalidInput, NotFound
from connector.timeutil import utcnow

Scope = Literal["read", "write"]
SCOPES: tuple[str, ...] = ("read", "write")
PREFIX = "ps_live_"
KEY_RE = re.compile(r"ps_live_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})")
TOUCH_EVERY = timedelta(minutes=1)
MAX_NAME = 64
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiKey:
    """A stored key as `apikey list` shows it; the secret is never part of it."""

    name: str
    scope: str
    key_id: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def prefix(self) -> str:
        """What identifies the key in lists and logs: `ps_live_<key id>`."""
        return f"{PREFIX}{self.key_id}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        def t(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"name": self.name, "scope": self.scope, "prefix": self.prefix,
                "created_at": t(self.created_at), "last_used_at": t(self.last_used_at),
                "revoked_at": t(self.revoked_at)}


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's name, id and scope."""

    name: str
    key_id: str
    scope: str

    def may_write(self) -> bool:
        """True for a write key."""
        return self.scope == "write"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in the ledger database."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """A new key: its record and the full key text, which is shown once and never stored."""
        name = _name(name)
        if scope not in SCOPES:
            raise InvalidInput(f"scope: {scope!r} is not one of {', '.join(SCOPES)}", field="scope")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = self.clock()
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(api_keys.insert().values(key_id=key_id, name=name, scope=scope,
                                                      secret_hash=_digest(secret), created_at=now))
        except IntegrityError:
            raise InvalidInput(f"name: an API key named {name!r} exists already (revoked keys keep their "
                               "name); choose another name", field="name") from None
        return ApiKey(name, scope, key_id, now, None, None), f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).all()
        return [ApiKey(r.name, r.scope, r.key_id, r.created_at, r.last_used_at, r.revoked_at) for r in rows]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the key named `name` (at once, for every server on this database); idempotent."""
        now = self.clock()
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.name == name)).first()
            if row is None:
                raise NotFound(f"no API key is named {name!r} (see `prepaid-sync apikey list`)", name=name)
            if row.revoked_at is None:
                conn.execute(api_keys.update().where(api_keys.c.id == row.id).values(revoked_at=now))
        return ApiKey(row.name, row.scope, row.key_id, row.created_at, row.last_used_at,
                      row.revoked_at or now)

    def verify(self, presented: str) -> Principal | None:
        """The principal of a presented key; None when it is malformed, unknown or revoked."""
        m = KEY_RE.fullmatch(presented)
        if m is None:
            return None
        key_id, secret = m.groups()
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys.c.name, api_keys.c.scope, api_keys.c.secret_hash,
                                      api_keys.c.revoked_at).where(api_keys.c.key_id == key_id)).first()
        if row is None or not hmac.compare_digest(_digest(secret), row.secret_hash) or row.revoked_at:
            return None
        self._touch(key_id)
        return Principal(row.name, key_id, row.scope)

    def _touch(self, key_id: str) -> None:
        """Record the last use, at most once per `TOUCH_EVERY` per key in this process."""
        now = self.clock()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(api_keys.update().where(api_keys.c.key_id == key_id).values(last_used_at=now))
        except SQLAlchemyError as exc:  # a busy database must not fail the request it serves
            log.warning("could not record the last use of API key %s%s: %s", PREFIX, key_id,
                        type(exc).__name__)


def _name(value: str) -> str:
    text = (value or "").strip()
    if not text or len(text) > MAX_NAME:
        raise InvalidInput(f"name: a key name of 1 to {MAX_NAME} characters is required", field="name")
    return visible.check(text, "name")
