"""One sender per channel kind: signed JSON webhook, DingTalk and WeCom robots, Slack, SMTP e-mail.

`send` either returns (delivered) or raises `DeliveryError`, whose message has every secret of the
channel masked (the URL's token, key or path, signing secrets, SMTP credentials). Senders never
follow redirects: a webhook that answers 3xx has moved, and the signed body must not follow it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl as ssl_lib
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import requests

from connector import __version__, redact
from connector.backoff import parse_retry_after
from connector.errors import ConnectorError
from connector.ops.alerts.config import (
    Channel,
    DingTalkChannel,
    SecretMissing,
    SlackChannel,
    SmtpChannel,
    WebhookChannel,
    WeComChannel,
)
from connector.ops.alerts.events import Alert

SIGNATURE_HEADER = "X-PrepaidSync-Signature"
TIMESTAMP_HEADER = "X-PrepaidSync-Timestamp"
DELIVERY_HEADER = "X-PrepaidSync-Delivery"
ROBOT_MAX_BYTES = 4096  # WeCom's markdown limit; DingTalk gets the same cut
SLACK_MAX_CHARS = 3500
# Robot codes that mean "too many messages": wait a minute rather than the normal backoff.
RATE_LIMIT_CODES = {"dingtalk": {130101}, "wecom": {45009}}


class DeliveryError(ConnectorError):
    """A send failed; the message is safe to store and log. `retry_after` is the server's hint, if any.
    The outbox tries again later (after `connector.backoff.backoff`), up to the channel's attempts."""

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-PrepaidSync-Signature` value: `sha256=` + hex HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str | None, body: bytes, header: str | None, *,
                     now: datetime | float, tolerance: int = 300) -> bool:
    """For receivers: True when `header` signs `body` at `timestamp`, and `timestamp` is within
    `tolerance` seconds of `now` (older or future-dated requests are refused as replays)."""
    if not timestamp or not header or not timestamp.isdigit():
        return False
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's 加签: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), before URL encoding."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def cut_bytes(text: str, limit: int, marker: str = "\n…") -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character, with `marker` when cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(marker.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + marker


def payload(alert: Alert, now: datetime, delivery_id: int | None = None) -> dict[str, Any]:
    """The generic webhook's JSON body."""
    return {
        "event": alert.event, "connection": alert.connection, "run_id": alert.run_id, "title": alert.title,
        "text": alert.text, "severity": alert.severity, "fields": alert.fields, "sent_at": now.isoformat(),
        "delivery_id": delivery_id
    }


def markdown(alert: Alert) -> str:
    """The robots' markdown: a heading, a context line, the text (list items kept together)."""
    out = f"### {alert.title}\n\n> {alert.severity} · {alert.connection}"
    out += f" · run {alert.run_id}\n\n" if alert.run_id is not None else "\n\n"
    prev_item = False
    for i, line in enumerate(alert.text.splitlines()):
        item = line.startswith("- ")
        out += ("" if i == 0 else "\n" if item and prev_item else "\n\n") + line
        prev_item = item
    return out


def _masks(channel: Channel, environ: Mapping[str, str] | None) -> tuple[str, ...]:
    """Every secret value of the channel, and the secret parts of its URL, longest first."""
    values: list[str] = []
    for name in channel.secret_env_names():
        try:
            value = channel.env(name, environ)
        except SecretMissing:
            continue
        if not value:
            continue
        values.append(value)
        parts = urlsplit(value)
        if parts.scheme and parts.netloc:
            tail = parts.path + ("?" + parts.query if parts.query else "")
            values += [tail, parts.path if len(parts.path) > 1 else "", parts.query]
            values += [v for _k, v in parse_qsl(parts.query)]
            values += [seg for seg in parts.path.split("/") if len(seg) >= 8 and not seg.isalpha()]
    return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def _post(kind: str, session: requests.Session, url: str, timeout: float, **kw: Any) -> requests.Response:
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    try:
        return session.post(url, timeout=(timeout, timeout), allow_redirects=False, **kw)
    except requests.Timeout:
        raise DeliveryError(f"{kind}: no answer from {host} within {timeout:g}s", unreachable=True) from None
    except requests.RequestException as exc:
        raise DeliveryError(f"{kind}: cannot reach {host}: {type(exc).__name__}: {exc}",
                            unreachable=True) from None


def _retry_after(resp: requests.Response, now: datetime) -> float | None:
    """The server's Retry-After (seconds or an HTTP-date, counted from `now`); a bare 429 means a minute."""
    seconds = parse_retry_after(resp.headers.get("Retry-After"), now)
    return 60.0 if seconds is None and resp.status_code == 429 else seconds


def _http_error(kind: str, resp: requests.Response, now: datetime) -> DeliveryError:
    return DeliveryError(f"{kind}: HTTP {resp.status_code}: {resp.text[:300]}",
                         retry_after=_retry_after(resp, now))


def _robot_answer(kind: str, resp: requests.Response, now: datetime) -> None:
    """DingTalk and WeCom answer HTTP 200 with `errcode`; only 0 means delivered."""
    if resp.status_code != 200:
        raise _http_error(kind, resp, now)
    try:
        body = resp.json()
        code = int(body.get("errcode"))
    except (ValueError, TypeError, AttributeError):
        raise DeliveryError(f"{kind}: unexpected answer: {resp.text[:300]}") from None
    if code != 0:
        wait = 60.0 if code in RATE_LIMIT_CODES[kind] else None
        raise DeliveryError(f"{kind}: errcode {code}: {str(body.get('errmsg', ''))[:200]}", retry_after=wait)


def _webhook(ch: WebhookChannel, alert: Alert, now: datetime, delivery_id: int | None,
             session: requests.Session, environ: Mapping[str, str] | None, timeout: float) -> None:
    url, secret = ch.env(ch.url_env, environ), ch.env(ch.secret_env, environ)
    assert url is not None and secret is not None
    body = json.dumps(payload(alert, now, delivery_id), ensure_ascii=False, separators=(",", ":"),
                      default=str).encode("utf-8")
    stamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": f"prepaid-sync/{__version__}",
               TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body),
               "X-PrepaidSync-Event": alert.event}
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = str(delivery_id)
    resp = _post("webhook", session, url, timeout, data=body, headers=headers)
    if not 200 <= resp.status_code < 300:
        raise _http_error("webhook", resp, now)


def _dingtalk(ch: DingTalkChannel, alert: Alert, now: datetime, delivery_id: int | None,
              session: requests.Session, environ: Mapping[str, str] | None, timeout: float) -> None:
    url, secret = ch.env(ch.url_env, environ), ch.env(ch.secret_env, environ)
    assert url is not None
    params = {}
    if secret:
        stamp = str(int(now.timestamp() * 1000))
        params = {"timestamp": stamp, "sign": dingtalk_sign(secret, stamp)}  # requests URL-encodes it
    body = {"msgtype": "markdown", "markdown": {"title": alert.title[:64],
                                                "text": cut_bytes(markdown(alert), ROBOT_MAX_BYTES)}}
    _robot_answer("dingtalk", _post("dingtalk", session, url, timeout, json=body, params=params), now)


def _wecom(ch: WeComChannel, alert: Alert, now: datetime, delivery_id: int | None,
           session: requests.Session, environ: Mapping[str, str] | None, timeout: float) -> None:
    url = ch.env(ch.url_env, environ)
    assert url is not None
    body = {"msgtype": "markdown", "markdown": {"content": cut_bytes(markdown(alert), ROBOT_MAX_BYTES)}}
    _robot_answer("wecom", _post("wecom", session, url, timeout, json=body), now)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(ch: SlackChannel, alert: Alert, now: datetime, delivery_id: int | None,
           session: requests.Session, environ: Mapping[str, str] | None, timeout: float) -> None:
    url = ch.env(ch.url_env, environ)
    assert url is not None
    text = f"*{_slack_escape(alert.title)}*\n_{alert.severity} · {_slack_escape(alert.connection)}_\n" \
           + _slack_escape(alert.text)
    resp = _post("slack", session, url, timeout, json={"text": text[:SLACK_MAX_CHARS]})
    if resp.status_code != 200 or resp.text.strip() != "ok":
        raise _http_error("slack", resp, now)


def email(ch: SmtpChannel, alert: Alert, now: datetime) -> EmailMessage:
    """The plain-text message an SMTP channel sends."""
    msg = EmailMessage()
    msg["Subject"] = alert.title
    msg["From"] = ch.sender
    msg["To"] = ", ".join(ch.to)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=ch.sender.rsplit("@", 1)[-1])
    msg["X-PrepaidSync-Event"] = alert.event
    details = json.dumps(alert.fields, ensure_ascii=False, indent=2, default=str)
    msg.set_content(f"{alert.text}\n\nseverity: {alert.severity}\nconnection: {alert.connection}\n"
                    f"run: {alert.run_id}\n\n{details}\n")
    return msg


def _smtp(ch: SmtpChannel, alert: Alert, now: datetime, delivery_id: int | None,
          session: requests.Session, environ: Mapping[str, str] | None, timeout: float) -> None:
    user, password = ch.env(ch.username_env, environ), ch.env(ch.password_env, environ)
    msg = email(ch, alert, now)
    try:
        client = smtplib.SMTP_SSL(ch.host, ch.port, timeout=timeout,
                                  context=ssl_lib.create_default_context()) \
            if ch.ssl else smtplib.SMTP(ch.host, ch.port, timeout=timeout)
        with client:
            if ch.starttls:
                client.starttls(context=ssl_lib.create_default_context())
            if user and password:
                client.login(user, password)
            refused = client.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"smtp: {ch.host}:{ch.port}: {type(exc).__name__}: {exc}",
                            unreachable=not isinstance(exc, smtplib.SMTPException)) from None
    if refused:
        raise DeliveryError(f"smtp: recipients refused: {', '.join(sorted(refused))}")


Sender = Callable[..., None]
SENDERS: dict[str, Sender] = {"webhook": _webhook, "dingtalk": _dingtalk, "wecom": _wecom, "slack": _slack,
                              "smtp": _smtp}


def send(channel: Channel, alert: Alert, *, now: datetime, delivery_id: int | None = None,
         session: requests.Session | None = None, environ: Mapping[str, str] | None = None,
         timeout: float = 10.0) -> None:
    """Deliver `alert` through `channel` now; raise `DeliveryError` (secrets masked) when it did not
    arrive."""
    masks = _masks(channel, environ)
    own = session is None
    http = session or requests.Session()
    try:
        SENDERS[channel.kind](channel, alert, now, delivery_id, http, environ, timeout)
    except DeliveryError as exc:
        raise DeliveryError(redact.text(exc.message, masks), retry_after=exc.retry_after,
                            unreachable=exc.unreachable) from None
    except SecretMissing as exc:
        raise DeliveryError(f"{channel.kind}: {exc}") from None
    except Exception as exc:  # a sender bug must not escape as an unmasked traceback
        raise DeliveryError(redact.text(f"{channel.kind}: {type(exc).__name__}: {exc}", masks)) from None
    finally:
        if own:
            http.close()
