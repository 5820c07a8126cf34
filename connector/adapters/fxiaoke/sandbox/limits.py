"""Sandbox clocks, tokens, throttles and the daily quota, following the vendor's published rules."""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8))
SAME_TOKEN_WINDOW = 6600  # seconds: asking again inside this window returns the same token


class SandboxClock:
    """Wall-clock seconds with an offset tests can advance (to expire tokens or roll the day)."""

    def __init__(self, base: float | None = None) -> None:
        self._offset = 0.0 if base is None else base - time.time()
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current sandbox time in epoch seconds."""
        return time.time() + self._offset

    def now_ms(self) -> int:
        """Current sandbox time in epoch milliseconds."""
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        with self._lock:
            self._offset += seconds


@dataclass
class Token:
    """An issued access token."""

    value: str
    style: str
    issued: float
    expires: float


class TokenRegistry:
    """Issues tokens by the 6600 s / 7200 s rule and checks them on business calls."""

    def __init__(self, clock: SandboxClock, ttl: int, per_minute: int = 10) -> None:
        self.clock = clock
        self.ttl = ttl
        self.per_minute = per_minute
        self._tokens: dict[str, Token] = {}
        self._current: dict[str, Token] = {}
        self._grants: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.issued = 0

    def begin_grant(self) -> bool:
        """Admit one token request: False if over 10/min or another one is in flight."""
        with self._lock:
            now = self.clock.now()
            while self._grants and self._grants[0] <= now - 60:
                self._grants.popleft()
            if self._in_flight or len(self._grants) >= self.per_minute:
                return False
            self._grants.append(now)
            self._in_flight += 1
            return True

    def end_grant(self) -> None:
        """Mark the in-flight token request finished."""
        with self._lock:
            self._in_flight -= 1

    def grant(self, style: str) -> Token:
        """The current token for `style`, or a new one once the same-token window has passed."""
        with self._lock:
            now = self.clock.now()
            current = self._current.get(style)
            same_window = min(SAME_TOKEN_WINDOW, self.ttl * SAME_TOKEN_WINDOW // 7200)
            if current is not None and now - current.issued < same_window and now < current.expires:
                return current
            token = Token(secrets.token_hex(16).upper(), style, now, now + self.ttl)
            self._tokens[token.value] = token
            self._current[style] = token
            self.issued += 1
            return token

    def valid(self, value: object, style: str) -> bool:
        """True if `value` is a live token of that style."""
        token = self._tokens.get(value) if isinstance(value, str) else None
        return token is not None and token.style == style and self.clock.now() < token.expires

    def expire_all(self) -> None:
        """Make every issued token invalid (as if the server restarted or revoked them)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires = self.clock.now() - 1
            self._current.clear()


class PathLimiter:
    """Per-interface sliding window: at most `limit` admitted calls per `window` seconds."""

    def __init__(self, clock: SandboxClock, limit: int | None, window: float = 20.0) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self.rejected = 0

    def admit(self, path: str) -> bool:
        """Count a call to `path` if it fits; rejected calls are not counted."""
        if self.limit is None:
            return True
        with self._lock:
            now = self.clock.now()
            calls = self._calls[path]
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                self.rejected += 1
                return False
            calls.append(now)
            return True


class DailyQuota:
    """Business calls per China-time day; resets at 00:00 GMT+8."""

    def __init__(self, clock: SandboxClock, limit: int | None) -> None:
        self.clock = clock
        self.limit = limit
        self._day = ""
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one call; False once the day's quota is used up."""
        with self._lock:
            day = datetime.fromtimestamp(self.clock.now(), CHINA_TZ).strftime("%Y-%m-%d")
            if day != self._day:
                self._day, self.used = day, 0
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True
