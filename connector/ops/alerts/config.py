"""The `[alerts]` table of `prepaid-sync.toml`: which events alert, through which channels, how retries go.

Secrets never sit in the file: webhook URLs (their `access_token=`, `key=` or Slack path is the
credential), signing secrets and SMTP passwords are named by environment variable (`*_env`) and
read when an alert is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.errors import ConfigError
from connector.mapping.loader import suggest
from connector.mapping.models import FLAGS

Event = Literal["run_failed", "consecutive_failures", "recovered", "critical_flags"]
EVENTS: tuple[Event, ...] = get_args(Event)
KINDS: tuple[str, ...] = ("webhook", "dingtalk", "wecom", "slack", "smtp")
# Names people reach for that the flag rules call something else.
FLAG_ALIASES = {"overdrawn": "negative", "prepayment_overdue": "overdue", "payment_edited": "payment_changed"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    # Never echo the value: someone may have pasted the secret URL itself here.
    if not _ENV_NAME.match(value):
        hint = " (it looks like a URL: put the URL in the environment and name the variable here)" \
            if "://" in value else ""
        raise ValueError(f"must name an environment variable (letters, digits, _){hint}")
    return value


EnvName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_env_name)]


class SecretMissing(ConfigError):
    """A channel's environment variable is not set (the message names the variable, never a value)."""


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    events: list[Event] | None = Field(default=None, description="only these events (default: all enabled)")
    connections: list[str] | None = Field(default=None, description="only these connections (default: all)")
    rate_per_minute: int | None = Field(default=None, ge=1, description="most messages sent per minute")

    def wants(self, event: str, connection: str) -> bool:
        """True when this channel takes `event` of `connection` (the test event goes everywhere)."""
        if event != "test" and self.events is not None and event not in self.events:
            return False
        return self.connections is None or connection in self.connections

    def env(self, name: str | None, environ: Mapping[str, str] | None = None) -> str | None:
        """The value of environment variable `name` (None when no variable is configured)."""
        if name is None:
            return None
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise SecretMissing(f"environment variable {name} is not set")
        return value

    def secret_env_names(self) -> tuple[str, ...]:
        """Names of the environment variables whose values are secret."""
        return tuple(v for k, v in self.__dict__.items() if k.endswith("_env") and isinstance(v, str))

    def per_minute(self) -> int | None:
        """The effective rate limit."""
        return self.rate_per_minute


class _UrlChannel(_Channel):
    url_env: EnvName


class WebhookChannel(_UrlChannel):
    """A generic JSON webhook; every request is signed with HMAC-SHA256 of `secret_env`'s value."""

    kind: Literal["webhook"]
    secret_env: EnvName


class DingTalkChannel(_UrlChannel):
    """A DingTalk custom group robot; `secret_env` (optional) enables 加签 signing."""

    kind: Literal["dingtalk"]
    secret_env: EnvName | None = None

    def per_minute(self) -> int | None:
        """DingTalk accepts 20 messages a minute per robot."""
        return self.rate_per_minute or 20


class WeComChannel(_UrlChannel):
    """A WeCom (企业微信) group robot; the URL's `key=` is the credential."""

    kind: Literal["wecom"]

    def per_minute(self) -> int | None:
        """WeCom accepts 20 messages a minute per robot."""
        return self.rate_per_minute or 20


class SlackChannel(_UrlChannel):
    """A Slack incoming webhook; the URL's path is the credential."""

    kind: Literal["slack"]


class SmtpChannel(_Channel):
    """Plain-text e-mail through an SMTP server."""

    kind: Literal["smtp"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    username_env: EnvName | None = None
    password_env: EnvName | None = None

    @model_validator(mode="after")
    def _tls(self) -> SmtpChannel:
        if self.ssl and self.starttls:
            raise ValueError(
                "ssl and starttls exclude each other (ssl = TLS from the start, usually port 465; "
                "set starttls = false)")
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("give both username_env and password_env, or neither")
        for addr in (self.sender, *self.to):
            if "@" not in addr:
                raise ValueError(f"{addr!r} is not an e-mail address")
        return self


CHANNEL_MODELS: dict[str, type[_Channel]] = {
    "webhook": WebhookChannel, "dingtalk": DingTalkChannel, "wecom": WeComChannel, "slack": SlackChannel,
    "smtp": SmtpChannel
}
Channel = Annotated[WebhookChannel | DingTalkChannel | WeComChannel | SlackChannel | SmtpChannel,
                    Field(discriminator="kind")]


class AlertSettings(BaseModel):
    """The `[alerts]` table, validated; every field has a default (no channels = no alerts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consecutive_failures: int = Field(default=3, ge=2, description="alert when a connection's failure streak "
                                      "reaches this, and again at each multiple")
    critical_flags: list[str] = Field(default_factory=lambda: ["negative", "amount_mismatch", "manual_edit"])
    events: list[Event] = Field(default_factory=lambda: list(EVENTS))
    channels: list[Channel] = Field(default_factory=list)
    max_attempts: int = Field(default=8, ge=1, le=50, description="deliveries tried before a row is dead")
    backoff_seconds: int = Field(default=30, ge=1,
                                 description="wait after the first failure; doubles each time")
    max_backoff_seconds: int = Field(default=3600, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                   description="connect and read timeout per send")
    deliver_budget_seconds: float = Field(
        default=30.0, gt=0, description="a delivery pass stops starting new "
        "sends after this long; the rest wait for the next pass")

    @field_validator("critical_flags")
    @classmethod
    def _flags(cls, value: list[str]) -> list[str]:
        for i, code in enumerate(value):
            if code not in FLAGS:
                hint = f" (the flag is called {FLAG_ALIASES[code]!r})" if code in FLAG_ALIASES \
                    else suggest(code, set(FLAGS))
                raise ValueError(f"{i}: unknown flag {code!r}{hint}; flags are {', '.join(FLAGS)}")
        return value

    @model_validator(mode="after")
    def _names(self) -> AlertSettings:
        seen: set[str] = set()
        for i, ch in enumerate(self.channels):
            if ch.name in seen:
                raise ValueError(f"channels.{i}.name: {ch.name!r} is used by an earlier channel")
            seen.add(ch.name)
        return self

    def channel(self, name: str) -> Channel:
        """The channel called `name`."""
        for ch in self.channels:
            if ch.name == name:
                return ch
        names = {ch.name for ch in self.channels}
        raise ConfigError(f"alerts: no channel named {name!r}{suggest(name, names)}"
                          + (f"; have {', '.join(sorted(names))}" if names else "; none is configured"),
                          field="alerts")

    def routes(self, event: str, connection: str) -> list[Channel]:
        """Channels that take `event` of `connection` (none when the event is switched off)."""
        if event != "test" and event not in self.events:
            return []
        return [ch for ch in self.channels if ch.wants(event, connection)]


def _where(loc: tuple[Any, ...]) -> str:
    # A discriminated union puts the tag in the path (channels.1.smtp.port); drop it.
    parts = [str(p) for i, p in enumerate(loc) if not (i == 2 and loc[0] == "channels" and p in KINDS)]
    return ".".join(["alerts", *parts])


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if loc[0] == "channels" and len(loc) > 3 and loc[2] in KINDS:
            fields = set(CHANNEL_MODELS[str(loc[2])].model_fields)
            others = [k for k, m in CHANNEL_MODELS.items() if key in m.model_fields]
            if others:
                return (f"{_where(loc)}: a {loc[2]} channel has no {key!r} "
                        f"(only {', '.join(others)} channels do)")
            return f"{_where(loc)}: unknown key {key!r}{suggest(key, fields)}"
        return f"{_where(loc)}: unknown key {key!r}{suggest(key, set(AlertSettings.model_fields))}"
    if kind == "union_tag_invalid":
        got = str((err.get("ctx") or {}).get("tag", ""))
        return (f"{_where((*loc, 'kind'))}: unknown kind {got!r}{suggest(got, set(KINDS))}; "
                f"use one of {', '.join(KINDS)}")
    if kind == "union_tag_not_found":
        return f"{_where((*loc, 'kind'))}: required key is missing (one of {', '.join(KINDS)})"
    if kind == "missing":
        return f"{_where(loc)}: required key is missing"
    if kind == "literal_error":
        got = str(err.get("input"))
        choices = set(re.findall(r"'([^']*)'", msg))
        return (f"{_where(loc)}: unknown value {got!r}{suggest(got, choices)}; "
                f"use one of {', '.join(sorted(choices))}")
    head = re.match(r"^(\d+|channels\.\d+\.\w+): (.*)$", msg, re.S)
    if head:  # a validator that names a deeper place than pydantic's location
        return f"{_where((*loc, *head.group(1).split('.')))}: {head.group(2)}"
    return f"{_where(loc)}: {msg}"


def load_alerts(raw: Mapping[str, Any] | None, connections: set[str] | None = None) -> AlertSettings:
    """Validate the raw `[alerts]` table; errors name the path inside it and the reason.

    `connections`, when given, are the configured connection names a channel may restrict itself to.
    """
    data = dict(raw or {})
    try:
        alerts = AlertSettings.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        raise ConfigError("; ".join(problems), field="alerts", path=problems[0].split(":", 1)[0]) from None
    if connections is not None:
        for i, ch in enumerate(alerts.channels):
            for name in ch.connections or []:
                if name not in connections:
                    where = f"alerts.channels.{i}.connections"
                    raise ConfigError(f"{where}: no connection named {name!r}{suggest(name, connections)}",
                                      field="alerts", path=where)
    return alerts
