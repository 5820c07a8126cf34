"""Alert delivery to local receivers: signed webhook, DingTalk, WeCom and Slack emulators, an SMTP server.

The receivers check what the real services check (HMAC signature and replay window, DingTalk's 加签,
WeCom's key and 4096-byte limit, Slack's path) and answer the way they do, errors included.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine, create_engine, select
from typer.testing import CliRunner

from connector.cli import alerts_cmd
from connector.cli.common import state
from connector.db.engine import make_engine
from connector.ops.alerts import (
    Alert,
    DeliveryError,
    deliver_due,
    enqueue,
    load_alerts,
    notify_run,
    send,
    verify_signature,
)
from connector.ops.alerts.channels import cut_bytes
from connector.ops.alerts.config import AlertSettings
from connector.ops import tables as ot
from connector.sync import tables as t

from clock import Clock

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOOK_SECRET = "whsec-3f9a1c7e5b2d"
HOOK_TOKEN = "wh-tok-5c1d9e0a"
DT_TOKEN = "dt0a1b2c3d4e5f60718293"
DT_SECRET = "SECdt9f8e7d6c5b4a3"
WC_KEY = "wc-6b1e2f3a-9c8d-4e7f"
SLACK_PATH = "/services/T0AB12CD3/B0EF45GH6/slackTok9x8y7z6w5v"
SECRETS = (HOOK_SECRET, HOOK_TOKEN, DT_TOKEN, DT_SECRET, WC_KEY, "slackTok9x8y7z6w5v")


@dataclass
class Hit:
    path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


Respond = Callable[[Hit], tuple[int, bytes]]


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records POSTs and answers through `respond`."""

    def __init__(self, respond: Respond) -> None:
        self.hits: list[Hit] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hit = Hit(parts.path, parts.query, {k: v[0] for k, v in parse_qs(parts.query).items()},
                          dict(self.headers.items()), body)
                outer.hits.append(hit)
                status, answer = respond(hit)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok_json(body: dict[str, Any]) -> tuple[int, bytes]:
    return 200, json.dumps(body).encode()


class WebhookApp:
    """Verifies the HMAC signature and the replay window like a receiver should; can fail on purpose."""

    def __init__(self, clock: Clock, secret: str = HOOK_SECRET, fail_first: int = 0,
                 delay: float = 0) -> None:
        self.clock, self.secret, self.fail_left, self.delay = clock, secret, fail_first, delay
        self.accepted: list[dict[str, Any]] = []
        self.rejected = 0

    def __call__(self, hit: Hit) -> tuple[int, bytes]:
        if hit.query.get("token") != HOOK_TOKEN:
            return 404, b"unknown hook"
        if not verify_signature(self.secret, hit.headers.get("X-PrepaidSync-Timestamp"), hit.body,
                                hit.headers.get("X-PrepaidSync-Signature"), now=self.clock.now):
            self.rejected += 1
            return 401, b"bad signature"
        if self.fail_left > 0:
            self.fail_left -= 1
            return 500, b"receiver is down"
        time.sleep(self.delay)
        self.accepted.append({**hit.json(), "_delivery": hit.headers.get("X-PrepaidSync-Delivery")})
        return 204, b""


class DingTalkApp:
    """The custom robot: access_token, then 加签 (timestamp within an hour, sign recomputed), then errcode."""

    def __init__(self, clock: Clock, fail_first: int = 0) -> None:
        self.clock, self.fail_left = clock, fail_first
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, hit: Hit) -> tuple[int, bytes]:
        if hit.path != "/robot/send" or hit.query.get("access_token") != DT_TOKEN:
            return ok_json({"errcode": 300001, "errmsg": "token is not exist"})
        stamp, got = hit.query.get("timestamp", ""), hit.query.get("sign", "")
        if not stamp.isdigit() or abs(int(stamp) / 1000 - self.clock.now.timestamp()) > 3600:
            return ok_json({"errcode": 310000, "errmsg": "invalid timestamp"})
        want = base64.b64encode(hmac.new(DT_SECRET.encode(), f"{stamp}\n{DT_SECRET}".encode(),
                                         hashlib.sha256).digest()).decode()
        raw_sign = next(p for p in hit.raw_query.split("&") if p.startswith("sign="))
        if got != want or "+" in raw_sign or "/" in raw_sign:  # the sign must arrive URL-encoded
            return ok_json({"errcode": 310000, "errmsg": "sign not match"})
        if self.fail_left > 0:
            self.fail_left -= 1
            return ok_json({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        body = hit.json()
        assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
        self.accepted.append(body)
        return ok_json({"errcode": 0, "errmsg": "ok"})


class WeComApp:
    """The group robot: the key in the URL, markdown content of at most 4096 UTF-8 bytes."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, hit: Hit) -> tuple[int, bytes]:
        if hit.path != "/cgi-bin/webhook/send" or hit.query.get("key") != WC_KEY:
            return ok_json({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = hit.json()
        if len(body["markdown"]["content"].encode("utf-8")) > 4096:
            return ok_json({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"})
        self.accepted.append(body)
        return ok_json({"errcode": 0, "errmsg": "ok"})


class SlackApp:
    """An incoming webhook: the secret path, then plain `ok`."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, hit: Hit) -> tuple[int, bytes]:
        if hit.path != SLACK_PATH:
            return 404, b"no_service"
        self.accepted.append(hit.json())
        return 200, b"ok"


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], Receiver]]:
    started: list[Receiver] = []

    def start(respond: Respond) -> Receiver:
        started.append(Receiver(respond))
        return started[-1]

    yield start
    for r in started:
        r.close()


@pytest.fixture
def clock_start() -> datetime:
    """The receivers' idea of now (the suite's `clock`), moved by the test along with
    `deliver_due(now=...)`."""
    return NOW


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    return make_engine(sqlite_url)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hook(name: str = "hook", **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "url_env": "PS_HOOK_URL", "secret_env": "PS_HOOK_SECRET", **kw}


def settings(*channels: dict[str, Any], **kw: Any) -> AlertSettings:
    return load_alerts({"channels": list(channels), **kw})


def alert(event: str = "run_failed", run_id: int | None = 7, text: str = "Run 7 of main ended failed: boom",
          **kw: Any) -> Alert:
    return Alert(event=event, connection="main", run_id=run_id, title=f"prepaid-sync: {event} on main",
                 text=text, severity="warning", fields={"status": "failed", **kw})


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(ot.alerts).order_by(ot.alerts.c.id)).all())


# --- signatures ---------------------------------------------------------------------------------------

def test_verify_signature_checks_secret_body_and_replay_window() -> None:
    from connector.ops.alerts.channels import sign

    body = b'{"event":"run_failed"}'
    stamp = str(int(NOW.timestamp()))
    header = sign(HOOK_SECRET, stamp, body)
    want = "sha256=" + hmac.new(HOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == want
    assert verify_signature(HOOK_SECRET, stamp, body, header, now=NOW)
    assert verify_signature(HOOK_SECRET, stamp, body, header, now=NOW + timedelta(seconds=300))
    assert not verify_signature(HOOK_SECRET, stamp, body, header, now=NOW + timedelta(seconds=301))  # replay
    assert not verify_signature(HOOK_SECRET, stamp, body, header, now=NOW - timedelta(seconds=301))  # future
    assert not verify_signature("other-secret", stamp, body, header, now=NOW)
    assert not verify_signature(HOOK_SECRET, stamp, body + b" ", header, now=NOW)
    assert not verify_signature(HOOK_SECRET, str(int(stamp) + 1), body, header, now=NOW)
    assert not verify_signature(HOOK_SECRET, None, body, header, now=NOW)
    assert not verify_signature(HOOK_SECRET, "12abc", body, header, now=NOW)
    assert not verify_signature(HOOK_SECRET, stamp, body, None, now=NOW.timestamp())


def test_cut_bytes_never_splits_a_character() -> None:
    text = "余额不足" * 2000  # 3 bytes each
    cut = cut_bytes(text, 4096)
    assert len(cut.encode("utf-8")) <= 4096 and cut.endswith("\n…") and cut.startswith("余额不足")
    assert cut_bytes("short", 4096) == "short"


# --- each channel against its emulator ----------------------------------------------------------------

def test_webhook_delivery_is_signed_and_verified(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/hooks/ps?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET}
    cfg = settings(hook())
    assert enqueue(engine, [alert(reason="CRM down")], cfg, NOW) == 1
    stats = deliver_due(engine, cfg, NOW, environ=env)
    assert (stats.sent, stats.retrying, stats.errors) == (1, 0, [])
    [got] = app.accepted
    [row] = rows(engine)
    assert got == {
        "event": "run_failed", "connection": "main", "run_id": 7, "title": "prepaid-sync: run_failed on main",
        "text": "Run 7 of main ended failed: boom", "severity": "warning",
        "fields": {"status": "failed", "reason": "CRM down"}, "sent_at": NOW.isoformat(),
        "delivery_id": row.id, "_delivery": str(row.id)
    }
    assert (row.status, row.attempts, row.sent_at, row.channel) == ("sent", 1, NOW, "hook")
    assert deliver_due(engine, cfg, NOW + timedelta(hours=1), environ=env).sent == 0  # sent once only


def test_webhook_with_the_wrong_secret_is_rejected_and_recorded(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/hooks/ps?token={HOOK_TOKEN}", "PS_HOOK_SECRET": "not-the-shared-secret"}
    cfg = settings(hook())
    enqueue(engine, [alert()], cfg, NOW)
    stats = deliver_due(engine, cfg, NOW, environ=env)
    assert (stats.sent, stats.retrying) == (0, 1) and app.rejected == 1 and app.accepted == []
    [row] = rows(engine)
    assert (row.status == "pending" and row.attempts == 1
            and row.last_error == "webhook: HTTP 401: bad signature")
    assert row.next_attempt_at == NOW + timedelta(seconds=30)


def test_dingtalk_sign_and_errcode(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = DingTalkApp(clock)
    rx = serve(app)
    ch = {"name": "dt", "kind": "dingtalk", "url_env": "PS_DT_URL", "secret_env": "PS_DT_SECRET"}
    env = {"PS_DT_URL": f"{rx.url}/robot/send?access_token={DT_TOKEN}", "PS_DT_SECRET": DT_SECRET}
    cfg = settings(ch)
    send(cfg.channels[0], alert(text="line one\n- item a\n- item b"), now=NOW, environ=env)
    [body] = app.accepted
    assert body["markdown"]["title"] == "prepaid-sync: run_failed on main"
    assert "### prepaid-sync: run_failed on main" in body["markdown"]["text"]
    assert "line one\n\n- item a\n- item b" in body["markdown"]["text"]
    # HTTP 200 with errcode 310000 is a failure, not a delivery
    with pytest.raises(DeliveryError, match="dingtalk: errcode 310000: sign not match"):
        send(cfg.channels[0], alert(), now=NOW, environ={**env, "PS_DT_SECRET": "SECwrong"})
    # without a secret no sign is sent, and a robot with 加签 on refuses it
    unsigned = settings({k: v for k, v in ch.items() if k != "secret_env"})
    with pytest.raises(DeliveryError, match="errcode 310000"):
        send(unsigned.channels[0], alert(), now=NOW, environ=env)
    assert len(app.accepted) == 1


def test_wecom_key_and_byte_limit(serve) -> None:  # type: ignore[no-untyped-def]
    app = WeComApp()
    rx = serve(app)
    cfg = settings({"name": "wc", "kind": "wecom", "url_env": "PS_WC_URL"})
    env = {"PS_WC_URL": f"{rx.url}/cgi-bin/webhook/send?key={WC_KEY}"}
    long = "\n".join(f"- negative: 客户{i} 上海某某贸易有限公司: balance -{i}.00 CNY" for i in range(400))
    send(cfg.channels[0], alert(text=long), now=NOW, environ=env)
    [body] = app.accepted
    content = body["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096 and content.endswith("…") and "客户0 上海" in content
    with pytest.raises(DeliveryError, match="wecom: errcode 93000: invalid webhook url"):
        send(cfg.channels[0], alert(), now=NOW,
             environ={"PS_WC_URL": f"{rx.url}/cgi-bin/webhook/send?key=bad"})


def test_slack_incoming_webhook(serve) -> None:  # type: ignore[no-untyped-def]
    app = SlackApp()
    rx = serve(app)
    cfg = settings({"name": "sl", "kind": "slack", "url_env": "PS_SLACK_URL"})
    send(cfg.channels[0], alert(text="balance < 0 & falling"), now=NOW,
         environ={"PS_SLACK_URL": rx.url + SLACK_PATH})
    [body] = app.accepted
    assert body == {
        "text": "*prepaid-sync: run_failed on main*\n_warning · main_\nbalance &lt; 0 &amp; falling"
    }
    with pytest.raises(DeliveryError, match="slack: HTTP 404: no_service"):
        send(cfg.channels[0], alert(), now=NOW, environ={"PS_SLACK_URL": rx.url + "/services/T/B/wrong"})


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def smtp_auth(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data,
                    LoginPassword) and (auth_data.login, auth_data.password) == (b"ps", b"mail-pass-77")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = closed_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=smtp_auth, auth_require_tls=False)
    ctl.start()
    yield box, port
    ctl.stop()


def test_smtp_delivery_with_login(engine: Engine, smtp_server) -> None:  # type: ignore[no-untyped-def]
    box, port = smtp_server
    cfg = settings({"name": "mail", "kind": "smtp", "host": "127.0.0.1", "port": port, "starttls": False,
                    "sender": "ps@example.com", "to": ["ops@example.com", "cfo@example.com"],
                    "username_env": "PS_SMTP_USER", "password_env": "PS_SMTP_PASSWORD"})
    env = {"PS_SMTP_USER": "ps", "PS_SMTP_PASSWORD": "mail-pass-77"}
    enqueue(engine, [alert(text="客户 Acme 余额为负")], cfg, NOW)
    assert deliver_due(engine, cfg, NOW, environ=env).sent == 1
    [(sender, rcpts, raw)] = box.messages
    msg = message_from_bytes(raw, policy=email_policy)
    assert sender == "ps@example.com" and rcpts == ["ops@example.com", "cfo@example.com"]
    assert msg["Subject"] == "prepaid-sync: run_failed on main" and msg["X-PrepaidSync-Event"] == "run_failed"
    assert "客户 Acme 余额为负" in msg.get_content() and "connection: main" in msg.get_content()
    # a wrong password is a recorded, redacted failure
    enqueue(engine, [alert(run_id=8)], cfg, NOW)
    stats = deliver_due(engine, cfg, NOW, environ={**env, "PS_SMTP_PASSWORD": "wrong-pass-99"})
    assert stats.retrying == 1 and "SMTPAuthenticationError" in stats.errors[0]
    assert "wrong-pass-99" not in stats.errors[0] and "wrong-pass-99" not in (rows(engine)[-1].last_error or
                                                                              "")


# --- retries, backoff, dead letters -------------------------------------------------------------------

def test_robot_rate_limit_then_delivered_on_the_third_attempt(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = DingTalkApp(clock, fail_first=2)
    rx = serve(app)
    cfg = settings({"name": "dt", "kind": "dingtalk", "url_env": "PS_DT_URL", "secret_env": "PS_DT_SECRET"})
    env = {"PS_DT_URL": f"{rx.url}/robot/send?access_token={DT_TOKEN}", "PS_DT_SECRET": DT_SECRET}
    enqueue(engine, [alert()], cfg, NOW)
    assert deliver_due(engine, cfg, NOW, environ=env).retrying == 1
    [row] = rows(engine)
    # 130101 "send too fast" waits a minute, longer than the 30 s backoff
    assert (row.attempts, row.next_attempt_at) == (1, NOW + timedelta(seconds=60))
    assert row.last_error == "dingtalk: errcode 130101: send too fast, exceed 20 times per minute"
    clock.now = NOW + timedelta(seconds=59)
    early = deliver_due(engine, cfg, clock.now, environ=env)
    assert (early.sent, early.retrying, len(rx.hits)) == (0, 0, 1)  # not before next_attempt_at
    clock.now = NOW + timedelta(seconds=60)
    assert deliver_due(engine, cfg, clock.now, environ=env).retrying == 1
    clock.now = NOW + timedelta(seconds=120)
    assert deliver_due(engine, cfg, clock.now, environ=env).sent == 1
    [row] = rows(engine)
    assert (row.status, row.attempts, row.sent_at, len(rx.hits), len(app.accepted)) == ("sent", 3, clock.now,
                                                                                        3, 1)


def test_backoff_doubles_and_the_row_dies_after_max_attempts(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock, fail_first=100)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/h?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET}
    cfg = settings(hook(), max_attempts=4, backoff_seconds=30, max_backoff_seconds=90)
    enqueue(engine, [alert()], cfg, NOW)
    waits = []
    for attempt in range(1, 5):
        stats = deliver_due(engine, cfg, clock.now, environ=env)
        [row] = rows(engine)
        assert row.attempts == attempt and row.last_error == "webhook: HTTP 500: receiver is down"
        if attempt < 4:
            assert stats.retrying == 1 and row.status == "pending"
            waits.append((row.next_attempt_at - clock.now).total_seconds())
            clock.now = row.next_attempt_at
        else:
            assert stats.dead == 1 and row.status == "dead"
    assert waits == [30, 60, 90]  # doubled, capped
    assert deliver_due(engine, cfg, clock.now + timedelta(days=1), environ=env).sent == 0
    assert len(rx.hits) == 4


def test_unreachable_channel_never_raises_and_does_not_hold_up_the_others(
        engine: Engine, serve, clock) -> None:  # type: ignore[no-untyped-def]
    app = SlackApp()
    rx = serve(app)
    cfg = settings(hook(), {"name": "sl", "kind": "slack", "url_env": "PS_SLACK_URL"})
    env = {
        "PS_HOOK_URL": f"http://127.0.0.1:{closed_port()}/h?token={HOOK_TOKEN}",
        "PS_HOOK_SECRET": HOOK_SECRET, "PS_SLACK_URL": rx.url + SLACK_PATH
    }
    enqueue(engine, [alert(run_id=i) for i in range(1, 4)], cfg, NOW)
    started = time.monotonic()
    stats = deliver_due(engine, cfg, NOW, environ=env)
    assert time.monotonic() - started < 3
    # the dead hook is tried once; its other rows wait for the next pass; Slack gets all three
    assert (stats.sent, stats.retrying, stats.deferred) == (3, 1, 2)
    assert len(app.accepted) == 3
    failed = [r for r in rows(engine) if r.channel == "hook" and r.attempts == 1]
    assert len(failed) == 1 and failed[0].last_error.startswith("webhook: cannot reach 127.0.0.1:")


def test_a_missing_environment_variable_is_recorded_not_raised(engine: Engine) -> None:
    cfg = settings(hook())
    enqueue(engine, [alert()], cfg, NOW)
    stats = deliver_due(engine, cfg, NOW, environ={"PS_HOOK_SECRET": HOOK_SECRET})
    assert stats.retrying == 1
    assert rows(engine)[0].last_error == "webhook: environment variable PS_HOOK_URL is not set"


def test_a_broken_database_never_raises(tmp_path: Path) -> None:
    broken = create_engine(f"sqlite:///{tmp_path}/no-schema.db")  # no ops_alerts table
    stats = deliver_due(broken, settings(hook()), NOW, environ={})
    assert stats.sent == 0 and "OperationalError" in stats.errors[0]
    assert notify_run(broken, settings(hook()), "main", 1, NOW, environ={}).sent == 0


def test_a_stale_claim_is_taken_over(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/h?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET}
    cfg = settings(hook())
    enqueue(engine, [alert()], cfg, NOW)
    with engine.begin() as conn:  # a worker claimed it and died
        conn.execute(ot.alerts.update().values(status="sending", attempts=1,
                                               next_attempt_at=NOW + timedelta(minutes=5)))
    clock.now = NOW + timedelta(minutes=4)
    assert deliver_due(engine, cfg, clock.now, environ=env).sent == 0
    clock.now = NOW + timedelta(minutes=5)
    assert deliver_due(engine, cfg, clock.now, environ=env).sent == 1
    [row] = rows(engine)
    assert (row.status, row.attempts, len(app.accepted)) == ("sent", 2, 1)


def test_robot_rate_per_minute_defers_the_rest(engine: Engine, serve) -> None:  # type: ignore[no-untyped-def]
    app = WeComApp()
    rx = serve(app)
    cfg = settings({"name": "wc", "kind": "wecom", "url_env": "PS_WC_URL", "rate_per_minute": 3})
    env = {"PS_WC_URL": f"{rx.url}/cgi-bin/webhook/send?key={WC_KEY}"}
    enqueue(engine, [alert(run_id=i) for i in range(5)], cfg, NOW)
    first = deliver_due(engine, cfg, NOW, environ=env)
    assert (first.sent, first.deferred) == (3, 2)
    assert deliver_due(engine, cfg, NOW + timedelta(seconds=30),
                       environ=env).sent == 0  # still 3 in the minute
    assert deliver_due(engine, cfg, NOW + timedelta(seconds=61), environ=env).sent == 2
    assert len(app.accepted) == 5


# --- queueing, routing, the run hook ------------------------------------------------------------------

def test_enqueue_routes_by_event_and_connection_and_is_idempotent(engine: Engine) -> None:
    cfg = settings(hook("all"), hook("flags-only", events=["critical_flags"]),
                   hook("other", connections=["other"]), events=["run_failed", "critical_flags"])
    batch = [alert("run_failed"), alert("critical_flags"), alert("recovered")]
    assert enqueue(engine, batch, cfg, NOW) == 3
    assert enqueue(engine, batch, cfg, NOW) == 0  # same run, same event, same channel: once
    got = sorted((r.event, r.channel) for r in rows(engine))
    assert got == [("critical_flags", "all"), ("critical_flags", "flags-only"), ("run_failed", "all")]
    assert all(r.status == "pending" and r.attempts == 0 and r.next_attempt_at == NOW for r in rows(engine))


def test_notify_run_decides_queues_and_delivers(engine: Engine, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/h?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET}
    cfg = settings(hook(), consecutive_failures=2)
    ids = []
    for status in ("failed", "failed", "ok"):
        with engine.begin() as conn:
            ids.append(int(conn.execute(t.runs.insert().values(
                connection="main", started_at=NOW, finished_at=NOW, status=status, dry_run=False,
                reason="Zoho answered 503" if status == "failed" else None)).inserted_primary_key[0]))
        stats = notify_run(engine, cfg, "main", ids[-1], NOW, environ=env)
        assert stats.enqueued == stats.sent
    assert [(a["event"], a["run_id"]) for a in app.accepted] == [("run_failed", ids[0]),
                                                                 ("run_failed", ids[1]),
                                                                 ("consecutive_failures", ids[1]),
                                                                 ("recovered", ids[2])]
    assert "Zoho answered 503" in app.accepted[0]["text"]
    assert notify_run(engine, cfg, "main", ids[-1], NOW,
                      environ=env).enqueued == 0  # a second call adds nothing
    assert notify_run(engine, settings(), "main", ids[0], NOW).to_dict()["sent"] == 0  # no channels: no work


# --- several workers ----------------------------------------------------------------------------------

def test_two_workers_never_send_a_row_twice(db_url: str, serve, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    app = WebhookApp(clock, delay=0.003)
    rx = serve(app)
    env = {"PS_HOOK_URL": f"{rx.url}/h?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET}
    cfg = settings(hook())
    enqueue(make_engine(db_url), [alert(run_id=i) for i in range(30)], cfg, NOW)
    engines = [make_engine(db_url), make_engine(db_url)]
    gate = threading.Barrier(2)
    results: list[Any] = [None, None]

    def work(i: int) -> None:
        gate.wait()
        results[i] = deliver_due(engines[i], cfg, NOW, environ=env)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    delivered = [a["delivery_id"] for a in app.accepted]
    assert len(delivered) == 30 and len(set(delivered)) == 30
    assert results[0].sent + results[1].sent == 30
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(engines[0]))


def test_a_claim_is_a_compare_and_set(engine: Engine) -> None:
    """A worker holding an old snapshot of a row cannot claim it once another worker has."""
    from connector.ops.alerts.outbox import _claim

    cfg = settings(hook())
    enqueue(engine, [alert()], cfg, NOW)
    [snapshot] = rows(engine)
    assert _claim(engine, snapshot, NOW)  # the first worker wins
    assert not _claim(engine, snapshot, NOW)  # the second, with the same snapshot, loses
    later = NOW + timedelta(minutes=6)
    assert not _claim(engine, snapshot, later)  # even after the claim expired: the row has moved on
    [claimed] = rows(engine)
    assert _claim(engine, claimed,
                  later) and not _claim(engine, claimed, later)  # a stale claim is taken once
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("sending", 2)


# --- secrets ------------------------------------------------------------------------------------------

def test_secrets_stay_out_of_rows_logs_and_errors(engine: Engine, serve, clock: Clock, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="connector")
    hook_rx, dt_rx, wc_rx, sl_rx = serve(WebhookApp(clock)), serve(DingTalkApp(clock)), serve(WeComApp()), \
        serve(SlackApp())
    dead = f"http://127.0.0.1:{closed_port()}"
    good = {
        "PS_HOOK_URL": f"{hook_rx.url}/h?token={HOOK_TOKEN}", "PS_HOOK_SECRET": HOOK_SECRET,
        "PS_DT_URL": f"{dt_rx.url}/robot/send?access_token={DT_TOKEN}", "PS_DT_SECRET": DT_SECRET,
        "PS_WC_URL": f"{wc_rx.url}/cgi-bin/webhook/send?key={WC_KEY}", "PS_SLACK_URL": sl_rx.url + SLACK_PATH
    }
    unreachable = {k: (v.replace(hook_rx.url, dead).replace(dt_rx.url, dead).replace(wc_rx.url, dead)
                       .replace(sl_rx.url, dead)) for k, v in good.items()}
    refused = {**good, "PS_HOOK_SECRET": "x" + HOOK_SECRET, "PS_DT_SECRET": DT_SECRET + "x",
               "PS_WC_URL": good["PS_WC_URL"] + "0", "PS_SLACK_URL": good["PS_SLACK_URL"] + "0"}
    cfg = settings(hook(),
                   {"name": "dt", "kind": "dingtalk", "url_env": "PS_DT_URL", "secret_env": "PS_DT_SECRET"},
                   {"name": "wc", "kind": "wecom", "url_env": "PS_WC_URL"},
                   {"name": "sl", "kind": "slack", "url_env": "PS_SLACK_URL"}, max_attempts=3)
    enqueue(engine, [alert()], cfg, NOW)
    texts: list[str] = []
    for i, env in enumerate((unreachable, refused, good)):
        clock.now = NOW + timedelta(minutes=5 * i)
        stats = deliver_due(engine, cfg, clock.now, environ=env)
        texts += stats.errors
        for ch in cfg.channels:
            try:
                send(ch, alert(), now=clock.now, environ=env)
            except DeliveryError as exc:
                texts.append(exc.message)
    assert stats.sent == 4  # the good pass delivered everything
    assert any("cannot reach" in x for x in texts) and any("errcode 310000" in x for x in texts)
    assert any("errcode 93000" in x for x in texts) and any("HTTP 401" in x for x in texts)
    stored = [json.dumps([str(v) for v in r]) for r in rows(engine)]
    assert all(r.attempts == 3 and r.status == "sent" for r in rows(engine))
    for secret in SECRETS:
        assert secret not in caplog.text, secret
        assert not any(secret in x for x in texts), secret
        assert not any(secret in x for x in stored), secret
    assert "failed (attempt 1 of 3" in caplog.text


# --- CLI ----------------------------------------------------------------------------------------------

def test_cli_test_and_pending(tmp_path: Path, serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    clock.now = datetime.now(UTC)  # the CLI sends with the real time
    app = WebhookApp(clock)
    rx = serve(app)
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text(f"""
database_url = "sqlite:///{tmp_path}/cli.db"
[connections.main]
crm = "zoho"
mapping = "mappings/zoho.yaml"
[[alerts.channels]]
name = "hook"
kind = "webhook"
url_env = "PS_HOOK_URL"
secret_env = "PS_HOOK_SECRET"
[[alerts.channels]]
name = "robot"
kind = "wecom"
url_env = "PS_WC_URL"
""", encoding="utf-8")
    monkeypatch.setenv("PS_HOOK_URL", f"{rx.url}/h?token={HOOK_TOKEN}")
    monkeypatch.setenv("PS_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.delenv("PS_WC_URL", raising=False)
    monkeypatch.setattr(state, "db", None)
    runner = CliRunner()
    res = runner.invoke(alerts_cmd.app, ["test", "--config", str(cfg), "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert doc["channels"] == [{"channel": "hook", "kind": "webhook", "ok": True, "error": None}, {
        "channel": "robot", "kind": "wecom", "ok": False,
        "error": "wecom: environment variable PS_WC_URL is not set"
    }]
    assert app.accepted[0]["event"] == "test"
    res = runner.invoke(alerts_cmd.app, ["test", "--config", str(cfg), "--channel", "hook"])
    assert res.exit_code == 0 and "delivered" in res.stdout
    res = runner.invoke(alerts_cmd.app, ["test", "--config", str(cfg), "--channel", "hok"])
    assert res.exit_code == 2 and "did you mean 'hook'" in res.stderr
    engine = make_engine(f"sqlite:///{tmp_path}/cli.db")
    enqueue(engine, [alert()], load_alerts({"channels": [hook()]}), NOW)
    res = runner.invoke(alerts_cmd.app, ["pending", "--config", str(cfg), "--json"])
    assert res.exit_code == 0
    [row] = json.loads(res.stdout)["alerts"]
    assert (row["channel"], row["status"], row["attempts"], row["title"]) == \
        ("hook", "pending", 0, "prepaid-sync: run_failed on main")
    assert "undelivered alerts (1)" in runner.invoke(alerts_cmd.app, ["pending", "--config", str(cfg)]).stdout
