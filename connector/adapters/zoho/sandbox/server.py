"""Run the sandbox as a loopback HTTP server (thread or blocking `serve`) or in-process on a Session."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.adapters.sandbox_http import (
    Answer,
    BackgroundServer,
    InProcessAdapter,
    bound_address,
    drop_connection,
    text_headers,
)
from connector.adapters.zoho.sandbox.app import SandboxApp, SandboxConfig
from connector.adapters.zoho.sandbox.seed import seed_org
from connector.adapters.zoho.sandbox.store import Org

log = logging.getLogger("connector.zoho.sandbox")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        reply = self.server.app.handle(self.command, url.path, url.query, dict(self.headers.items()), body)
        if reply.drop:
            drop_connection(self)
            return
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header: the org's clock (shifted by `--clock-offset`), not the machine's."""
        return self.server.app.http_date() if timestamp is None else super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Send the access log to the sandbox logger at debug level."""
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: SandboxApp


class ZohoSandbox(BackgroundServer):
    """A seeded sandbox org on a loopback port; use as a context manager or start()/stop()."""

    thread_name = "zoho-sandbox"
    poll_interval = 0.05

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, latency_ms: int = 0,
                 fail_rate: float = 0.0, token_ttl: int = 3600, daily_credits: int | None = None,
                 concurrency: int | None = None, related: bool = True, config: SandboxConfig | None = None,
                 clock: Callable[[], float] | None = None, clock_offset: float = 0.0) -> None:
        self.host, self.port = host, port
        self.config = config or SandboxConfig(seed=seed, latency_ms=latency_ms, fail_rate=fail_rate,
                                              token_ttl=token_ttl, daily_credits=daily_credits,
                                              concurrency=concurrency, clock_offset=clock_offset)
        base = clock or time.time
        # The org's clock (record times, the Date header, token expiry) runs `clock_offset` s off `base`.
        self.org = Org(clock=lambda: base() + self.config.clock_offset)
        self.summary = seed_org(self.org, self.config.seed, seed=self.config.seed, related=related)
        self.app = SandboxApp(self.config, self.org)

    @property
    def api_domain(self) -> str:
        """Base URL of the API (what the token response calls `api_domain`)."""
        return self.app.base_url

    @property
    def accounts_url(self) -> str:
        """Base URL of the emulated accounts server (token endpoint at /oauth/v2/token)."""
        return self.app.base_url

    def info(self) -> dict[str, str]:
        """URLs and the sandbox's fixed, fake credentials."""
        return {"api_domain": self.api_domain, "accounts_url": self.accounts_url,
                "client_id": self.config.client_id, "client_secret": self.config.client_secret,
                "refresh_token": self.config.refresh_token}

    def env(self, prefix: str = "ZOHO_") -> dict[str, str]:
        """Environment variables holding the credentials, for `ZohoCredentials.from_env`."""
        return {
            f"{prefix}CLIENT_ID": self.config.client_id, f"{prefix}CLIENT_SECRET": self.config.client_secret,
            f"{prefix}REFRESH_TOKEN": self.config.refresh_token
        }

    def _bind(self) -> _Server:
        server = _Server((self.host, self.port), _Handler)
        server.app = self.app
        host, port = bound_address(server)
        self.app.base_url = f"http://{host}:{port}"
        log.info("zoho sandbox listening on %s", self.app.base_url)
        return server

    def stop(self) -> None:
        """Stop serving and stop the notification worker."""
        super().stop()
        self.app.deliveries.stop()

    def session(self, base_url: str = "https://sandbox.zohoapis.invalid") -> requests.Session:
        """A Session on which the sandbox answers in-process (no socket) at `base_url`."""
        self.app.base_url = base_url
        sess = requests.Session()
        sess.mount(base_url, InProcessTransport(self.app))
        return sess


class InProcessTransport(InProcessAdapter):
    """A requests transport that hands each request straight to a `SandboxApp`."""

    drop_message = "Connection aborted: sandbox dropped the connection"

    def __init__(self, app: SandboxApp) -> None:
        super().__init__()
        self.app = app

    def answer(self, request: requests.PreparedRequest, body: bytes) -> Answer:
        """Answer `request` from the app."""
        url = urlsplit(request.url or "")
        reply = self.app.handle(request.method or "GET", url.path, url.query, text_headers(request), body)
        return None if reply.drop else (reply.status, {"Date": self.app.http_date(), **reply.headers},
                                        reply.body)


def serve(host: str = "127.0.0.1", port: int = 0, seed: int = 0, latency_ms: int = 0, fail_rate: float = 0.0,
          token_ttl: int = 3600, daily_credits: int | None = None, concurrency: int | None = None,
          clock_offset: float = 0.0) -> None:
    """Run a sandbox until SIGINT/SIGTERM; print one JSON line with URLs and credentials to stdout."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sandbox = ZohoSandbox(host, port, seed=seed, latency_ms=latency_ms, fail_rate=fail_rate,
                          token_ttl=token_ttl, daily_credits=daily_credits, concurrency=concurrency,
                          clock_offset=clock_offset)
    sandbox.start()
    print(json.dumps(sandbox.info()), flush=True)
    log.info("seeded %s", {k: v for k, v in sandbox.summary.items() if k != "anomalies"})
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()
        log.info("zoho sandbox stopped")
