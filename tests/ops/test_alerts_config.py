"""`[alerts]` validation: errors name the path inside the table and the reason, secrets stay out of them."""

from __future__ import annotations

import pytest

from connector.errors import ConfigError
from connector.mapping.models import FLAGS
from connector.ops.alerts.config import EVENTS, load_alerts

HOOK = {
    "name": "ops-hook", "kind": "webhook", "url_env": "PS_ALERT_WEBHOOK_URL", "secret_env": "PS_ALERT_SECRET"
}
MAIL = {"name": "mail", "kind": "smtp", "host": "smtp.example.com", "sender": "ps@example.com",
        "to": ["ops@example.com"]}


def error_of(raw: dict, **kw: object) -> str:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        load_alerts(raw, **kw)  # type: ignore[arg-type]
    return info.value.message


def test_defaults_and_full_table() -> None:
    empty = load_alerts({})
    assert empty.channels == [] and list(empty.events) == list(EVENTS) and empty.consecutive_failures == 3
    assert set(empty.critical_flags) <= set(FLAGS)
    full = load_alerts(
        {
            "consecutive_failures": 4,
            "critical_flags": ["negative", "duplicate_payment"],
            "events": ["run_failed"],
            "channels": [
                HOOK, {"name": "dt", "kind": "dingtalk", "url_env": "PS_DT", "secret_env": "PS_DT_SECRET"}, {
                    "name": "wc", "kind": "wecom", "url_env": "PS_WC", "events": ["critical_flags"]
                }, {"name": "sl", "kind": "slack", "url_env": "PS_SL", "connections": ["main"]}, {
                    **MAIL, "port": 465, "ssl": True, "starttls": False, "username_env": "U",
                    "password_env": "P"
                }
            ],
        }, connections={"main", "other"})
    assert [c.kind for c in full.channels] == ["webhook", "dingtalk", "wecom", "slack", "smtp"]
    assert full.channels[1].per_minute() == 20 and full.channels[0].per_minute() is None
    # events switched off globally never route; channel filters narrow further
    assert [c.name for c in full.routes("run_failed", "main")] == ["ops-hook", "dt", "sl", "mail"]
    assert [c.name for c in full.routes("run_failed", "other")] == ["ops-hook", "dt", "mail"]
    assert full.routes("recovered", "main") == []


@pytest.mark.parametrize(("raw", "expected"), [
    ({"channels": [HOOK, {"name": "b", "kind": "wecon", "url_env": "Z"}]
      }, "alerts.channels.1.kind: unknown kind 'wecon' (did you mean 'wecom'?)"),
    ({"channels": [{"name": "b", "url_env": "Z"}]}, "alerts.channels.0.kind: required key is missing"),
    ({"channels": [{"name": "s", "kind": "slack"}]}, "alerts.channels.0.url_env: required key is missing"),
    ({"channels": [{"name": "s", "kind": "slack", "url_env": "X", "evnets": []}]
      }, "alerts.channels.0.evnets: unknown key 'evnets' (did you mean 'events'?)"),
    ({"channels": [{**HOOK, "secret_env": None}]}, "alerts.channels.0.secret_env"),
    ({"channels": [HOOK, {**HOOK, "kind": "dingtalk"}]
      }, "alerts.channels.1.name: 'ops-hook' is used by an earlier"),
    ({"channels": [{**HOOK, "kind": "slack"}]},
     "alerts.channels.0.secret_env: a slack channel has no 'secret_env' (only webhook, dingtalk channels do)"
     ),
    ({"channels": [{**MAIL, "ssl": True}]}, "alerts.channels.0: ssl and starttls exclude each other"),
    ({"channels": [{**MAIL, "port": 0}]}, "alerts.channels.0.port:"),
    ({"channels": [{**MAIL, "username_env": "U"}]}, "give both username_env and password_env"),
    ({"channels": [{**MAIL, "to": []}]}, "alerts.channels.0.to:"),
    ({"critical_flags": ["negative", "overdrawn"]}, "alerts.critical_flags.1: unknown flag 'overdrawn' "
     "(the flag is called 'negative')"),
    ({"critical_flags": ["low_balanse"]}, "alerts.critical_flags.0: unknown flag 'low_balanse' "
     "(did you mean 'low_balance'?)"),
    ({"events": ["recovered", "run_faild"]
      }, "alerts.events.1: unknown value 'run_faild' (did you mean 'run_failed'?)"),
    ({"consecutive_failure": 3}, "alerts.consecutive_failure: unknown key 'consecutive_failure' "
     "(did you mean 'consecutive_failures'?)"),
    ({"consecutive_failures": 1}, "alerts.consecutive_failures: Input should be greater than or equal to 2"),
])
def test_errors_name_the_path(raw: dict, expected: str) -> None:  # type: ignore[type-arg]
    assert expected in error_of(raw)


def test_unknown_connection_is_suggested() -> None:
    msg = error_of({"channels": [{**HOOK, "connections": ["mian"]}]}, connections={"main"})
    assert msg == "alerts.channels.0.connections: no connection named 'mian' (did you mean 'main'?)"


def test_a_url_pasted_into_url_env_is_refused_without_echoing_it() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=0f9e8d7c6b5a4f3e2d1c"
    msg = error_of({"channels": [{"name": "dt", "kind": "dingtalk", "url_env": url}]})
    assert msg.startswith("alerts.channels.0.url_env: must name an environment variable")
    assert "looks like a URL" in msg and "0f9e8d7c6b5a4f3e2d1c" not in msg and "dingtalk.com" not in msg


def test_channel_lookup_suggests() -> None:
    settings = load_alerts({"channels": [HOOK]})
    assert settings.channel("ops-hook").kind == "webhook"
    with pytest.raises(ConfigError, match="no channel named 'ops-hok' \\(did you mean 'ops-hook'\\?\\)"):
        settings.channel("ops-hok")
