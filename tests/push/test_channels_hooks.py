"""Channels (token kept only as a hash, renewal before expiry, a lost channel subscribed anew) and the
receiver route (wrong channel or token refused with no run, malformed and oversized bodies refused)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from push_world import Served, free_port
from sqlalchemy import Engine, select

from connector.adapters.push import PushSource, Subscription
from connector.api.hooks import MAX_BODY, hook_url, hooks_router
from connector.db.engine import make_engine
from connector.push import tables as t
from connector.push.channels import RETRY_FAILED, Channels, token_hash
from connector.push.debounce import Debouncer
from connector.push.hub import PushHub

from clock import Clock


class FakeSource(PushSource):
    """A CRM that grants what it is asked, remembers tokens, and can lose the channel or fail."""

    max_lifetime = timedelta(days=7)

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.expiry: dict[str, datetime] = {}
        self.calls: list[str] = []
        self.fail = False

    def subscribe(self, channel_id: str, url: str, token: str, expires_at: datetime) -> Subscription:
        self.calls.append("subscribe")
        self.tokens[channel_id], self.expiry[channel_id] = token, expires_at
        return Subscription(channel_id=channel_id, expires_at=expires_at, resources=("Accounts", "Deals"))

    def renew(self, channel_id: str, url: str, expires_at: datetime) -> Subscription | None:
        self.calls.append("renew")
        if self.fail:
            raise ConnectionError("CRM down")
        if channel_id not in self.tokens:
            return None
        self.expiry[channel_id] = expires_at
        return Subscription(channel_id=channel_id, expires_at=expires_at, resources=("Accounts", "Deals"))

    def unsubscribe(self, channel_id: str) -> None:
        self.calls.append("unsubscribe")
        self.tokens.pop(channel_id, None)

    def details(self, channel_id: str) -> Subscription | None:
        return None


@pytest.fixture
def db(tmp_path: Any) -> Engine:
    return make_engine(f"sqlite:///{tmp_path}/push.db")


def test_enable_keeps_only_the_tokens_hash(db: Engine, clock: Clock) -> None:
    source = FakeSource()
    channels = Channels(db, clock=clock)
    state = channels.enable("main", source, "https://ps.example.com/hooks/zoho/main")
    [token] = source.tokens.values()
    assert 20 <= len(token) <= 50 and state.channel_id in source.tokens and len(state.channel_id) == 16
    with db.connect() as conn:
        row = conn.execute(select(t.channels)).one()
    assert row.token_sha256 == token_hash(token) and token not in str(tuple(row))
    assert state.expires_at == clock() + timedelta(days=1) and state.resources == "Accounts,Deals"
    assert channels.verify("main", state.channel_id, token)
    assert not channels.verify("main", state.channel_id, token + "x")
    other_channel = str(int(state.channel_id) + 1)
    assert not channels.verify("main", other_channel, token)
    assert not channels.verify("main", state.channel_id, None) and not channels.verify("other", "1", token)
    again = channels.enable("main", source, state.notify_url)  # enabling again: same channel, new token
    assert again.channel_id == state.channel_id and not channels.verify("main", state.channel_id, token)
    assert "token" not in str(again.to_dict()).replace("token_sha256", "")


def test_renewal_happens_before_expiry_and_keeps_the_token(db: Engine, clock: Clock) -> None:
    source = FakeSource()
    channels = Channels(db, clock=clock)
    state = channels.enable("main", source, "https://ps.example.com/hooks/zoho/main")
    token = source.tokens[state.channel_id]
    clock.advance(hours=17)
    assert not channels.due("main")  # 7 h left of 24
    clock.advance(hours=1, seconds=1)
    assert channels.due("main")  # under a quarter left
    renewed = channels.renew("main", source)
    assert renewed is not None and renewed.expires_at == clock() + timedelta(days=1)
    assert renewed.renewed_at == clock() and source.tokens[state.channel_id] == token
    assert channels.verify("main", state.channel_id, token) and not channels.due("main")


def test_a_lost_channel_is_subscribed_anew_and_a_failure_waits(db: Engine, clock: Clock) -> None:
    source = FakeSource()
    channels = Channels(db, clock=clock)
    state = channels.enable("main", source, "https://ps.example.com/hooks/zoho/main")
    clock.advance(days=2)  # lapsed while nothing ran
    source.tokens.clear()  # ... and the CRM forgot it
    renewed = channels.renew("main", source)
    assert renewed is not None and source.calls[-2:] == ["renew", "subscribe"]
    assert channels.verify("main", state.channel_id, source.tokens[state.channel_id])
    clock.advance(hours=23)
    source.fail = True
    with pytest.raises(ConnectionError):
        channels.renew("main", source)
    stored = channels.get("main")
    assert stored is not None and "CRM down" in (stored.last_error or "")
    assert not channels.due("main")  # a failure is not retried at every poll ...
    clock.advance(RETRY_FAILED.total_seconds())
    assert channels.due("main")  # ... but a minute later
    source.fail = False
    assert channels.renew("main", source) is not None
    assert channels.get("main").last_error is None  # type: ignore[union-attr]
    assert channels.disable("main", source) and channels.get("main") is None
    assert not channels.disable("main", None)


class Client:
    """The receiver served by uvicorn on a loopback port, and plain HTTP calls to it."""

    def __init__(self, app: FastAPI) -> None:
        self.served = Served(app, free_port())
        self.served.start()
        self.http = requests.Session()
        self.http.trust_env = False

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(f"http://127.0.0.1:{self.served.port}{path}", timeout=30, **kw)

    def close(self) -> None:
        self.served.stop()


def _app(db: Engine, clock: Clock) -> tuple[Client, PushHub, list[str], str, str]:
    runs: list[str] = []
    debouncer = Debouncer(lambda key: runs.append(key) or "ok", quiet=0.01, max_delay=0.1)
    hub = PushHub(db, lambda key: "ok", channels=Channels(db, clock=clock), debouncer=debouncer)
    source = FakeSource()
    state = hub.channels.enable("main", source, hook_url("https://ps.example.com/", "zoho", "main"))
    app = FastAPI()
    app.include_router(hooks_router(hub))
    return Client(app), hub, runs, state.channel_id, source.tokens[state.channel_id]


def _notice(channel_id: str, token: str | None) -> dict[str, Any]:
    return {"server_time": 1718117126473, "query_params": {}, "module": "Prepaid_Payments",
            "resource_uri": "https://www.zohoapis.com/crm/v8/Prepaid_Payments",
            "ids": ["5725767000003000064"], "affected_fields": [], "operation": "insert",
            "channel_id": channel_id, "token": token}


def test_the_receiver_refuses_wrong_channels_and_tokens_without_a_run(
        db: Engine, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client, hub, runs, channel_id, token = _app(db, clock)
    try:
        wrong = [("main", _notice(channel_id, "not-the-token")), ("main", _notice("999", token)),
                 ("main", _notice(channel_id, None)), ("other", _notice(channel_id, token))]
        for connection, body in wrong:
            assert client.post(f"/hooks/zoho/{connection}", json=body).status_code == 403
        assert client.post("/hooks/zoho/main", data=b"{not json").status_code == 400
        assert client.post("/hooks/zoho/main", json={"channel_id": channel_id}).status_code == 400
        big = client.post("/hooks/zoho/main", data=b"x" * (MAX_BODY + 1))
        assert big.status_code == 413
        assert not hub.debouncer.pending() and hub.debouncer.runs == 0 and runs == []
        state = hub.channels.get("main")
        assert state is not None and state.refused == 3 and state.notices == 0
        ok = client.post("/hooks/zoho/main", json=_notice(channel_id, token))
        assert ok.status_code == 200 and ok.json() == {"status": "accepted"}
        assert hub.debouncer.wait_idle(5) and runs == ["main"]
        assert hub.channels.get("main").notices == 1  # type: ignore[union-attr]
    finally:
        client.close()
        hub.close()
    assert token not in caplog.text


def test_a_burst_at_the_receiver_is_one_run(db: Engine, clock: Clock) -> None:
    client, hub, runs, channel_id, token = _app(db, clock)
    hub.debouncer.quiet, hub.debouncer.max_delay = 1.0, 10.0
    try:
        for _ in range(20):
            assert client.post("/hooks/zoho/main", json=_notice(channel_id, token)).status_code == 200
        assert hub.debouncer.wait_idle(10)
    finally:
        client.close()
        hub.close()
    assert runs == ["main"]


def test_the_scheduler_renews_push_channels_on_every_poll(tmp_path: Any, db: Engine) -> None:
    from connector.cli.schedule_cmd import build_worker
    from connector.cli.sync_cmd import write_config
    from connector.config import Connection, LoadedSettings, Settings
    from connector.ops.scheduler import Worker

    write_config(tmp_path, "zoho")
    built = build_worker(str(tmp_path / "prepaid-sync.toml"), "w1", db)
    assert built.renew is not None  # `schedule` and `serve --schedule` renew
    calls: list[int] = []

    def renew() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("CRM down")  # logged; the poll carries on

    unscheduled = Connection(crm="zoho", mapping="m.yaml")  # nothing falls due: only the renewal runs
    loaded = LoadedSettings(settings=Settings(connections={"zoho": unscheduled}), path=tmp_path / "x.toml")
    worker = Worker(loaded, db, worker_id="w1", renew=renew)
    worker.poll()
    worker.run_once()
    assert calls == [1, 1]
