"""The sandbox's notification sender: POSTs Zoho's notification body to a channel's notify_url, retrying.

Changes handed over while a request runs are grouped into one notification per (channel, module,
operation), with every record id in `ids`, as Zoho sends one callback for a batch write. A delivery
that fails (no connection, a timeout, any status outside 2xx) is tried again after `RETRY_AFTER`
seconds of the *org's* clock, then dropped; a test moves the sandbox clock and calls `kick()` instead
of waiting. A delivery whose channel expired or was disabled in the meantime is dropped. Zoho documents
no retry policy; this one is a choice, written down in docs/zoho.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from connector.adapters.zoho.sandbox.store import Org
from connector.adapters.zoho.sandbox.watch import Subscription, WatchHandlers
from connector.adapters.zoho.wire import encode

log = logging.getLogger("connector.zoho.sandbox.watch")
RETRY_AFTER = (5, 30, 120, 600, 3600)  # seconds after the 1st, 2nd, ... failed attempt; then dropped
MAX_IDS = 100  # ids per notification (a write takes at most 100 records)
TIMEOUT = (3.0, 10.0)
IDLE_WAIT = 0.25  # longest real-time wait before the org's clock is read again


@dataclass
class Delivery:
    """One notification on its way to a notify_url."""

    channel_id: str
    module: str
    url: str
    body: dict[str, Any]
    due: float
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class Deliveries:
    """A worker thread sending notifications; `delivered`, `failed` and `dropped` say what became of them."""

    def __init__(self, org: Org, resource_uri: Callable[[str], str],
                 session: requests.Session | None = None) -> None:
        self.org = org
        self.resource_uri = resource_uri
        self.session = session or requests.Session()
        self.session.trust_env = False  # a loopback receiver: no proxy from the environment
        self.watch: WatchHandlers | None = None
        self._fresh: list[tuple[Subscription, str, str, list[str], dict[str, Any]]] = []
        self.queue: list[Delivery] = []
        self.delivered: list[dict[str, Any]] = []
        self.failed = 0
        self.dropped: list[Delivery] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._open = 0  # requests in progress: their changes are grouped once they end

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold back grouping while one API request runs, so a batch write becomes one notification."""
        with self._cond:
            self._open += 1
        try:
            yield
        finally:
            with self._cond:
                self._open -= 1
                self._cond.notify_all()

    def publish(self, sub: Subscription, operation: str, rec_id: str, fields: list[str],
                values: dict[str, Any]) -> None:
        """A watched change (called under the org lock): queued for the worker."""
        with self._cond:
            self._fresh.append((sub, operation, rec_id, fields, values))
            self._cond.notify_all()
        self.start()  # the first watched change starts the worker

    # -- the worker -----------------------------------------------------------------------

    def start(self) -> None:
        """Start sending from a daemon thread."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="zoho-sandbox-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the worker (queued deliveries stay queued)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def kick(self) -> None:
        """Look at due times again now (after a test moved the org's clock)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most `timeout` real seconds) until `done()` holds; checked after every attempt."""
        with self._cond:
            return self._cond.wait_for(done, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                if not self._open:
                    self._group()
                now = self.org.clock()
                due = [d for d in self.queue if d.due <= now]
                if not due:
                    nxt = min((d.due for d in self.queue), default=None)
                    wait = IDLE_WAIT if nxt is None else max(0.01, min(IDLE_WAIT, nxt - now))
                    self._cond.wait(wait if self.queue or self._fresh else None)
                    continue
            for delivery in due:
                self._attempt(delivery)

    def _group(self) -> None:
        """Turn fresh changes into notifications: one per (channel, module, operation, url), ids in order."""
        groups: dict[tuple[str, str, str, str], tuple[Subscription, list[str], list[Any]]] = {}
        for sub, operation, rec_id, fields, values in self._fresh:
            key = (sub.channel_id, sub.module, operation, sub.notify_url)
            _sub, ids, affected = groups.setdefault(key, (sub, [], []))
            if rec_id in ids:
                continue
            ids.append(rec_id)
            if operation == "update":
                affected.append({rec_id: values if sub.return_values else fields})
        self._fresh = []
        now = self.org.clock()
        for (_cid, _module, operation, _url), (sub, ids, affected) in groups.items():
            for start in range(0, len(ids), MAX_IDS):
                chunk = set(ids[start:start + MAX_IDS])
                body = self._body(sub, operation, ids[start:start + MAX_IDS],
                                  [a for a in affected if next(iter(a)) in chunk])
                self.queue.append(Delivery(sub.channel_id, sub.module, sub.notify_url, body, now))

    def _body(self, sub: Subscription, operation: str, ids: list[str], affected: list[Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "server_time": 0, "query_params": dict(parse_qsl(urlsplit(sub.notify_url).query)),
            "module": sub.module, "resource_uri": self.resource_uri(sub.module), "ids": ids,
            "affected_fields": affected, "operation": operation, "channel_id": sub.channel_id,
        }
        if sub.token is not None:
            body["token"] = sub.token
        return body

    def _alive(self, delivery: Delivery) -> bool:
        if self.watch is None:
            return True
        with self.org.lock:
            return any(s.channel_id == delivery.channel_id and s.module == delivery.module
                       for s in self.watch.live())

    def _attempt(self, delivery: Delivery) -> None:
        if not self._alive(delivery):
            self._finish(delivery, dropped=True)
            return
        delivery.body["server_time"] = int(self.org.clock() * 1000)  # when this attempt is sent
        delivery.attempts += 1
        try:
            resp = self.session.post(delivery.url, data=encode(delivery.body).encode(), timeout=TIMEOUT,
                                     headers={"Content-Type": "application/json"})
            ok, error = 200 <= resp.status_code < 300, f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            ok, error = False, type(exc).__name__
        if ok:
            self._finish(delivery, dropped=False)
            return
        delivery.errors.append(error)
        with self._cond:
            self.failed += 1
            if delivery.attempts > len(RETRY_AFTER):
                self.queue.remove(delivery)
                self.dropped.append(delivery)
                log.info("notification to %s dropped after %d attempts", delivery.url, delivery.attempts)
            else:
                delivery.due = self.org.clock() + RETRY_AFTER[delivery.attempts - 1]
            self._cond.notify_all()

    def _finish(self, delivery: Delivery, *, dropped: bool) -> None:
        with self._cond:
            self.queue.remove(delivery)
            if dropped:
                self.dropped.append(delivery)
            else:
                self.delivered.append(delivery.body)
            self._cond.notify_all()
