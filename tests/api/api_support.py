"""API test support: a real uvicorn server on a free port (in this process, or `prepaid-sync serve` as a child
process), API keys, and an HTTP client that speaks to it with `requests`. Nothing waits on a timer: the
in-process server says it listens through an event, the child process through its start line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from connector.api.app import create_app
from connector.api.keys import KeyStore
from connector.api.server import ApiServer, server_config
from connector.db.engine import make_engine
from connector.ledger import Ledger

PROBLEM = "application/problem+json"
START_TIMEOUT = 120  # seconds a server may take to start on a loaded machine (an upper bound, not a wait)


@dataclass
class Api:
    """A running API: its base URL, database URL, a write key and a read key."""

    url: str
    db: str
    write_key: str
    read_key: str
    session: requests.Session = field(default_factory=requests.Session)

    def headers(self, key: str | None = None, idem: str | None = None) -> dict[str, str]:
        """Authorization (the write key by default; "" for none) and an optional Idempotency-Key."""
        key = self.write_key if key is None else key
        out = {"Authorization": f"Bearer {key}"} if key else {}
        if idem is not None:
            out["Idempotency-Key"] = idem
        return out

    def post(self, path: str, body: Any, *, key: str | None = None, idem: str | None = None,
             session: requests.Session | None = None) -> requests.Response:
        """POST JSON to `path` under /api/v1."""
        return (session or self.session).post(f"{self.url}/api/v1{path}", json=body,
                                              headers=self.headers(key, idem), timeout=120)

    def get(self, path: str, *, key: str | None = None, **params: Any) -> requests.Response:
        """GET `path` under /api/v1."""
        return self.session.get(f"{self.url}/api/v1{path}", params=params, headers=self.headers(key),
                                timeout=120)

    def ledger(self) -> Ledger:
        """The ledger on the server's database (for setting up and checking, outside HTTP)."""
        return Ledger(make_engine(self.db))


def secret_of(key: str) -> str:
    """The secret part of a `ps_live_<key id>_<secret>` key (it may itself contain '_')."""
    return key[len("ps_live_") + 13:]


def make_keys(db: str) -> tuple[str, str]:
    """A write key and a read key on database `db`."""
    store = KeyStore(make_engine(db))
    return store.create("writer", "write")[1], store.create("reader", "read")[1]


class InProcessServer:
    """uvicorn serving `create_app` in a thread of this process (so `caplog` sees its logs)."""

    def __init__(self, engine: Any, config: Any = None) -> None:
        self.server = ApiServer(server_config(create_app(engine, config), "127.0.0.1", 0))
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        assert self.server.ready.wait(START_TIMEOUT), "the in-process server did not start"
        assert self.server.url is not None
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)


class ServeProcess:
    """`prepaid-sync serve --port 0` as a child process; its URL is read from its one start line."""

    def __init__(self, db: str, *args: str, env: dict[str, str] | None = None, replace_env: bool = False,
                 stderr: Path | None = None) -> None:
        self.log = stderr
        self.rest_of_stdout = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--db", db, "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=stderr.open("w") if stderr else subprocess.PIPE, text=True,
            env=(env or {}) if replace_env else {**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the server listens (or exits)
        if not line:
            self.proc.wait(START_TIMEOUT)
            err = self.proc.stderr.read() if self.proc.stderr else stderr.read_text() if stderr else ""
            raise AssertionError(f"serve did not start: {err}")
        self.start = json.loads(line)
        self.url: str = self.start["url"]

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and everything it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.rest_of_stdout, err = self.proc.communicate(timeout=START_TIMEOUT)
        return self.proc.returncode, err if self.log is None else self.log.read_text()
