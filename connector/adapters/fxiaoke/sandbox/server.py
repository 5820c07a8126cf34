"""Ways to reach the sandbox: a loopback HTTP server, a background-thread wrapper, an in-process transport."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.adapters.fxiaoke.sandbox.app import Reply, SandboxApp, SandboxConfig
from connector.adapters.sandbox_http import (
    INFO_PATH,
    Answer,
    BackgroundServer,
    InProcessAdapter,
    bound_address,
    drop_connection,
    text_headers,
)

log = logging.getLogger("connector.fxiaoke.sandbox")
JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}


def _encode(reply: Reply) -> bytes:
    return json.dumps(reply.body or {}, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        """Hand the body to the app and write its reply."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        reply = self.server.app.handle(url.path, dict(self.headers.items()), raw, url.query)
        self._send(reply)

    def do_GET(self) -> None:  # noqa: N802 - the API is POST-only; answer like its gateway does
        """Refuse non-POST calls with an envelope (except the sandbox-only credentials path)."""
        if urlsplit(self.path).path == INFO_PATH:
            host, port = bound_address(self.server)
            info = self.server.app.credentials.public(f"http://{host}:{port}")
            self._send(Reply(body={"sandbox": "fxiaoke", **info}))
            return
        self._send(
            Reply(
                body={
                    "errorCode": 10006, "errorMessage": "the parameter method is missing or illegal",
                    "errorDescription": "只支持POST请求"
                }))

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            drop_connection(self)
            return
        payload = _encode(reply)
        self.send_response(reply.status)
        self.send_header("Content-Type", JSON_HEADERS["Content-Type"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header: the tenant's clock (shifted by `--clock-offset`), not the machine's."""
        return self.server.app.http_date() if timestamp is None else super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class signature
        """Access log at debug level, to stderr via logging."""
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


class FxiaokeSandbox(BackgroundServer):
    """The sandbox on a loopback port in a background thread: `with FxiaokeSandbox(seed=10) as sb: ...`."""

    thread_name = "fxiaoke-sandbox"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, config: SandboxConfig | None = None,
                 app: SandboxApp | None = None, **options: Any) -> None:
        self.app = app or SandboxApp(config or SandboxConfig(**options))
        self._address = (host, port)

    @property
    def base_url(self) -> str:
        """`http://host:port` once started."""
        return self.server_url

    def info(self) -> dict[str, str]:
        """Base URL and the credentials the sandbox accepts."""
        return self.app.credentials.public(self.base_url)

    def _bind(self) -> _Server:
        return _Server(self._address, self.app)


class SandboxTransport(InProcessAdapter):
    """A requests transport that answers from a `SandboxApp` in-process (mount it on a Session)."""

    def __init__(self, app: SandboxApp) -> None:
        super().__init__()
        self.app = app

    def answer(self, request: requests.PreparedRequest, body: bytes) -> Answer:
        """Hand the request to the app; encode its reply like the HTTP handler does."""
        url = urlsplit(request.url or "")
        reply = self.app.handle(url.path, text_headers(request), body, url.query)
        return None if reply.drop else (reply.status, {**JSON_HEADERS, "Date": self.app.http_date()},
                                        _encode(reply))


def serve(host: str = "127.0.0.1", port: int = 0, seed: int = 0, latency_ms: int = 0, fail_rate: float = 0.0,
          token_ttl: int = 7200, daily_quota: int | None = None, rate_limit: int | None = 100,
          clock_offset: float = 0.0) -> None:
    """Run the sandbox until SIGINT/SIGTERM; print one JSON line (URL + credentials) to stdout."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = SandboxConfig(seed=seed, latency_ms=latency_ms, fail_rate=fail_rate, token_ttl=token_ttl,
                           daily_quota=daily_quota, rate_limit=rate_limit, clock_offset=clock_offset)
    sandbox = FxiaokeSandbox(host, port, config=config).start()
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sys.stdout.write(json.dumps(sandbox.info()) + "\n")
        sys.stdout.flush()
        log.info("fxiaoke sandbox serving %s (seed=%d, rate_limit=%s, daily_quota=%s, fail_rate=%s)",
                 sandbox.base_url, seed, rate_limit, daily_quota, fail_rate)
        while not stopped.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("fxiaoke sandbox stopped")
