"""An end-to-end push world: a loopback Zoho sandbox, a connection set up with `prepaid-sync init`, the
receiver served by uvicorn on a fixed port (stop and start it to play a receiver that was down), and a
Zoho API user that records payments the way a sales rep's tools would (through the REST API)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from typer.testing import CliRunner

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.adapters.zoho.wire import encode
from connector.api.app import create_app
from connector.api.server import server_config
from connector.cli import app as cli
from connector.config import LoadedSettings, load_settings
from connector.db.engine import make_engine
from connector.push.hub import PushHub

runner = CliRunner()


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """uvicorn serving `app` on 127.0.0.1:`port` from a thread; `start` and `stop` may repeat."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.app, self.port = app, port
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        config = server_config(self.app, "127.0.0.1", self.port)  # serve's settings: no logging config
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="receiver", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:  # uvicorn offers a flag, not an event: look until it is up
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the receiver did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
            self.server = self.thread = None


class ZohoUser:
    """Records payments through the sandbox's REST API, with an access token of its own."""

    def __init__(self, sb: ZohoSandbox) -> None:
        self.sb = sb
        self.http = requests.Session()
        self.http.trust_env = False
        body = self.http.post(f"{sb.accounts_url}/oauth/v2/token", timeout=10, data={
            "grant_type": "refresh_token", "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret, "refresh_token": sb.config.refresh_token}).json()
        self.headers = {"Authorization": f"Zoho-oauthtoken {body['access_token']}"}

    def pay(self, account: dict[str, Any], amount: Decimal, currency: str, day: str) -> str:
        """Insert one received payment for `account`; its record id."""
        row = {"Name": f"PAY-PUSH-{amount}", "Account": {"id": account["id"]}, "Amount": amount,
               "Currency": currency, "Payment_Date": day, "Payment_Status": "Received",
               "Payment_Method": "Card"}

        resp = self.http.post(f"{self.sb.api_domain}/crm/v8/Prepaid_Payments", timeout=10,
                              data=encode({"data": [row], "trigger": []}).encode(),
                              headers={**self.headers, "Content-Type": "application/json"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["data"][0]["details"]["id"])


@dataclass
class World:
    """Everything an end-to-end push test touches."""

    sb: ZohoSandbox
    cfg: Path
    loaded: LoadedSettings
    db: Engine
    hub: PushHub
    receiver: Served
    port: int
    user: ZohoUser

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def balance(self, account_id: str) -> Decimal | None:
        with self.sb.org.lock:
            value = self.sb.org.modules["Accounts"].records[account_id].get("Prepaid_Balance")
        return None if value is None else Decimal(str(value))

    def funded_account(self) -> tuple[dict[str, Any], str]:
        """An account the full sync gave a balance, and the currency of its payments."""
        org = self.sb.org
        with org.lock:
            accounts = org.modules["Accounts"].records
            for pay in org.modules["Prepaid_Payments"].records.values():
                acc = accounts.get((pay.get("Account") or {}).get("id"))
                if acc and pay.get("Currency") and acc.get("Prepaid_Balance") is not None and \
                        acc.get("Currency") == pay["Currency"]:
                    return dict(acc), str(pay["Currency"])
        raise AssertionError("no funded account in the sandbox")

    def close(self) -> None:
        self.receiver.stop()
        self.hub.close()
        self.sb.stop()
        self.db.dispose()


def build_world(tmp_path: Path, *, seed: int = 12, quiet: float = 0.3, max_delay: float = 2.0) -> World:
    """Sandbox, `init`, a full sync, the receiver up; push not yet enabled."""
    sb = ZohoSandbox(seed=seed).start()
    res = runner.invoke(cli, ["init", "--crm", "zoho", "--sandbox", sb.api_domain, "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.stdout
    cfg = tmp_path / "prepaid-sync.toml"
    full = runner.invoke(cli, ["sync", "run", "--config", str(cfg), "--json"])
    assert full.exit_code == 0, full.stdout
    loaded = load_settings(cfg)
    db = make_engine(f"sqlite:///{tmp_path}/prepaid-sync.db")
    app = create_app(db, cfg)  # serve's app: the receiver is wired in from the config
    hub: PushHub = app.state.push_hub
    hub.debouncer.quiet, hub.debouncer.max_delay = quiet, max_delay
    port = free_port()
    receiver = Served(app, port)
    receiver.start()
    return World(sb, cfg, loaded, db, hub, receiver, port, ZohoUser(sb))
