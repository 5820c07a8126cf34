"""Plumbing both sandboxes share: a loopback server in a daemon thread, and an in-process requests
transport."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

# (status, headers, body) to answer with, or None to drop the connection.
Answer = tuple[int, Mapping[str, str], bytes] | None
# Sandbox-only (no CRM has it): `GET` answers {"sandbox": "zoho"|"fxiaoke", <its fake credentials>}, which
# is how `prepaid-sync init --sandbox URL` checks what answers at URL and learns the credentials it accepts.
INFO_PATH = "/sandbox/credentials"


def bound_address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """The host and port a bound server listens on (the socket reports the host as text)."""
    host, port = server.server_address[:2]
    return (host if isinstance(host, str) else bytes(host).decode()), port


def text_headers(request: requests.PreparedRequest) -> dict[str, str]:
    """The request's headers as text, as the loopback server would read them (bytes values as Latin-1)."""
    return {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in request.headers.items()}


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the client's connection without answering (the sandboxes' "disconnect" fault)."""
    handler.close_connection = True
    try:
        handler.connection.shutdown(2)  # socket.SHUT_RDWR
    except OSError:
        pass


class BackgroundServer:
    """A ThreadingHTTPServer served from a daemon thread; subclasses say how to `_bind` it."""

    thread_name = "sandbox"
    poll_interval = 0.5
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _bind(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    @property
    def server_url(self) -> str:
        """`http://host:port` once started."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        host, port = bound_address(self._server)
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread."""
        self._server = self._bind()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(self.poll_interval,),
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release the port and wait for the thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class InProcessAdapter(BaseAdapter):
    """A requests transport answering from `answer(request, body)` in-process (mount it on a Session)."""

    drop_message = "sandbox dropped the connection"

    def answer(self, request: requests.PreparedRequest, body: bytes) -> Answer:
        raise NotImplementedError

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        """Answer `request` and wrap the result as a Response (or raise ConnectionError on a drop)."""
        body = request.body or b""
        if not isinstance(body, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a sandbox transport answers whole bodies, not a {type(body).__name__}")
        answered = self.answer(request, body.encode() if isinstance(body, str) else bytes(body))
        if answered is None:
            raise requests.ConnectionError(self.drop_message, request=request)
        status, headers, content = answered
        resp = requests.Response()
        resp.status_code = status
        resp.headers = CaseInsensitiveDict(headers)
        resp.raw = BytesIO(content)
        resp._content = content
        resp.encoding = "utf-8"
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        """Nothing to release."""
