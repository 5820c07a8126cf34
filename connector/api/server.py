"""One uvicorn process serving the API: a JSON line with its URL once it listens, graceful SIGTERM.

The first SIGTERM or SIGINT stops accepting connections, lets the requests in flight finish (within
`GRACE_SECONDS`), stops the in-process scheduler if there is one, and exits 0; a second signal exits
1 at once (postings are transactions: a request cut off either committed or wrote nothing). The
signal handling is the project's one (`connector.ops.signals.stop_signals`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from connector.ops.signals import stop_signals

log = logging.getLogger(__name__)
GRACE_SECONDS = 30


class ApiServer(uvicorn.Server):
    """uvicorn's server with our start line and our signals."""

    def __init__(self, config: uvicorn.Config, *, on_ready: Callable[[str], None] = lambda url: None,
                 on_stop: Callable[[str], None] = lambda name: None) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.on_stop = on_stop
        self.url: str | None = None
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does; once listening, tell `on_ready` the real URL (port 0 resolved)."""
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.url = _url(self.servers[0].sockets[0].getsockname())
            self.ready.set()
            self.on_ready(self.url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening first (uvicorn does it too; doing it here makes the line below true), say so,
        then let uvicorn finish the requests in flight."""
        for server in self.servers:
            server.close()
        log.info("stopped listening; finishing %d request(s) in flight", len(self.server_state.tasks))
        await super().shutdown(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT: the first starts a graceful stop, a second exits 1 at once."""
        if threading.current_thread() is not threading.main_thread():  # an in-process test server
            yield
            return

        def first(name: str) -> None:
            log.warning("%s: finishing the requests in flight, then exiting (send it again to abort now)",
                        name)
            self.should_exit = True
            self.on_stop(name)

        with stop_signals(first, lambda name: log.error("%s again: aborting now", name)):
            yield


def server_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """uvicorn settings: our logging (no uvicorn log config of its own), a bounded graceful shutdown."""
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=True, server_header=False,
                          timeout_graceful_shutdown=GRACE_SECONDS, lifespan="off")


def announce(url: str, **extra: Any) -> None:
    """The one JSON line on stdout that says where the server listens."""
    sys.stdout.write(json.dumps({"url": url, "pid": os.getpid(), **extra}) + "\n")
    sys.stdout.flush()


def _url(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
