"""Each connection's push channel: enable, renew before it lapses, check the CRM's calls, disable.

The channel id is ours (a random number, as the CRM takes a long); the verification token is a fresh
random secret shown to the CRM once, at enable, and kept here only as its SHA-256: the CRM sends it
back in every call, where it is hashed and compared in constant time. Renewal keeps the token (the CRM
is asked to move the expiry only); a channel the CRM has lost is subscribed anew, with a new token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from connector import redact
from connector.adapters.push import PushSource, Subscription
from connector.db.engine import write_transaction
from connector.push import tables as t
from connector.timeutil import utcnow

log = logging.getLogger(__name__)
LIFETIME = timedelta(days=1)  # asked of the CRM (never more than the CRM's own maximum)
RENEW_AT = 0.25  # renew once less than this share of the lifetime is left
RETRY_FAILED = timedelta(minutes=1)  # a failed renewal is tried again after this long, not at every poll


def token_hash(token: str) -> str:
    """The stored form of a verification token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_channel_id() -> str:
    """A random channel id: 16 digits, never starting with 0 (the CRM reads it as a long)."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


@dataclass(frozen=True)
class ChannelState:
    """A connection's channel as stored (never the token)."""

    connection: str
    channel_id: str
    notify_url: str
    resources: str
    expires_at: datetime
    enabled_at: datetime
    renewed_at: datetime | None
    last_notice_at: datetime | None
    notices: int
    refused: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (times in ISO 8601)."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class Channels:
    """The push channels in one database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 lifetime: timedelta = LIFETIME) -> None:
        self.engine = engine
        self.clock = clock
        self.lifetime = lifetime
        self._failed_at: dict[str, datetime] = {}
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def get(self, connection: str) -> ChannelState | None:
        """The connection's channel, or None when push is not enabled."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.channels).where(t.channels.c.connection == connection)).first()
        if row is None:
            return None
        return ChannelState(**{k: getattr(row, k) for k in ChannelState.__dataclass_fields__})

    def all(self) -> list[ChannelState]:
        """Every enabled channel."""
        with self.engine.connect() as conn:
            names = conn.execute(select(t.channels.c.connection).order_by(t.channels.c.connection)).scalars()
            found = [self.get(n) for n in list(names)]
        return [c for c in found if c is not None]

    # -- changing -------------------------------------------------------------------------

    def enable(self, connection: str, source: PushSource, notify_url: str) -> ChannelState:
        """Subscribe (or subscribe again, with a new token) and store the channel."""
        old = self.get(connection)
        channel_id = old.channel_id if old else new_channel_id()
        token = secrets.token_urlsafe(24)  # 32 characters; Zoho takes up to 50
        now = self.clock()
        sub = source.subscribe(channel_id, notify_url, token, now + self._life(source))
        values = {"channel_id": channel_id, "token_sha256": token_hash(token), "notify_url": notify_url,
                  "resources": ",".join(sub.resources), "expires_at": sub.expires_at, "enabled_at": now,
                  "renewed_at": None, "last_error": None}
        table = t.channels
        with write_transaction(self.engine) as conn:
            if old is None:
                conn.execute(table.insert().values(connection=connection, notices=0, refused=0, **values))
            else:
                conn.execute(table.update().where(table.c.connection == connection).values(**values))
        log.info("push enabled for %s: channel %s until %s", connection, channel_id,
                 sub.expires_at.isoformat())
        state = self.get(connection)
        assert state is not None
        return state

    def disable(self, connection: str, source: PushSource | None) -> bool:
        """Unsubscribe at the CRM (when `source` is given) and forget the channel; False if there was none."""
        old = self.get(connection)
        if old is None:
            return False
        if source is not None:
            source.unsubscribe(old.channel_id)
        with write_transaction(self.engine) as conn:
            conn.execute(t.channels.delete().where(t.channels.c.connection == connection))
        log.info("push disabled for %s (channel %s)", connection, old.channel_id)
        return True

    def due(self, connection: str, now: datetime | None = None) -> bool:
        """Whether the channel should be renewed now (little life left, and no failure just now)."""
        state = self.get(connection)
        now = now or self.clock()
        if state is None:
            return False
        with self._lock:
            failed = self._failed_at.get(connection)
        if failed is not None and now - failed < RETRY_FAILED:
            return False
        return state.expires_at - now <= self.lifetime * RENEW_AT

    def renew(self, connection: str, source: PushSource) -> ChannelState | None:
        """Move the channel's expiry on (or subscribe it anew if the CRM has lost it); None when not enabled.

        A failure is stored in `last_error` and raised; the next try waits `RETRY_FAILED`."""
        state = self.get(connection)
        if state is None:
            return None
        now = self.clock()
        try:
            sub = source.renew(state.channel_id, state.notify_url, now + self._life(source))
        except Exception as exc:
            self._failed(connection, exc)
            raise
        if sub is None:
            log.warning("the CRM no longer holds the push channel of %s; subscribing it again", connection)
            try:
                return self.enable(connection, source, state.notify_url)
            except Exception as exc:
                self._failed(connection, exc)
                raise
        self._store_renewal(connection, sub, now)
        with self._lock:
            self._failed_at.pop(connection, None)
        log.info("push channel of %s renewed until %s", connection, sub.expires_at.isoformat())
        return self.get(connection)

    def _store_renewal(self, connection: str, sub: Subscription, now: datetime) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(t.channels.update().where(t.channels.c.connection == connection).values(
                expires_at=sub.expires_at, renewed_at=now, resources=",".join(sub.resources),
                last_error=None))

    def _failed(self, connection: str, exc: Exception) -> None:
        with self._lock:
            self._failed_at[connection] = self.clock()
        reason = redact.text(f"{type(exc).__name__}: {exc}")[:500]
        with write_transaction(self.engine) as conn:
            conn.execute(t.channels.update().where(t.channels.c.connection == connection).values(
                last_error=reason))

    def _life(self, source: PushSource) -> timedelta:
        return min(self.lifetime, source.max_lifetime)

    # -- the CRM's calls ------------------------------------------------------------------

    def verify(self, connection: str, channel_id: str, token: str | None) -> bool:
        """Whether a call names this connection's channel and carries its token (constant-time compare)."""
        c = t.channels.c
        with self.engine.connect() as conn:
            row = conn.execute(select(c.channel_id, c.token_sha256).where(c.connection == connection)).first()
        if row is None or token is None:
            return False
        same_channel = hmac.compare_digest(channel_id.encode(), str(row.channel_id).encode())
        return hmac.compare_digest(token_hash(token), str(row.token_sha256)) and same_channel

    def count(self, connection: str, accepted: bool) -> None:
        """Count a call (accepted or refused) for `status`; skipped rather than waiting on a busy database."""
        c = t.channels.c
        values = ({"notices": c.notices + 1, "last_notice_at": self.clock()} if accepted
                  else {"refused": c.refused + 1})
        try:
            with write_transaction(self.engine, wait=0.2) as conn:
                conn.execute(t.channels.update().where(c.connection == connection).values(**values))
        except OperationalError as exc:
            log.debug("call to %s not counted: %s", connection, exc)
