"""The alert outbox reads Retry-After with the CRM clients' parser (seconds or an HTTP-date) and obeys it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import select

from connector.db.engine import make_engine
from connector.ops import tables as ot
from connector.ops.alerts import Alert, DeliveryError, deliver_due, enqueue, load_alerts, send
from connector.ops.alerts.outbox import backoff

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
URL = "https://hooks.example.test/h?token=wh-tok-5c1d9e0a"
ENV = {"PS_HOOK_URL": URL, "PS_HOOK_SECRET": "whsec-3f9a1c7e5b2d"}
SETTINGS = load_alerts({"channels": [{"name": "hook", "kind": "webhook", "url_env": "PS_HOOK_URL",
                                      "secret_env": "PS_HOOK_SECRET"}], "backoff_seconds": 30,
                        "max_backoff_seconds": 3600})


def _alert() -> Alert:
    return Alert(event="run_failed", connection="main", run_id=7, title="prepaid-sync: run_failed on main",
                 text="Run 7 of main ended failed: boom", severity="warning", fields={"status": "failed"})


@pytest.mark.parametrize(("status", "header", "wait"), [
    (503, "Mon, 02 Mar 2026 08:05:00 GMT", 300.0),  # an HTTP-date, five minutes after the pass's `now`
    (503, "120", 120.0),
    (429, None, 60.0),  # a bare 429 waits a minute
    (500, None, None),
])
@responses.activate
def test_send_reads_retry_after_in_both_forms(status: int, header: str | None, wait: float | None) -> None:
    headers = {"Retry-After": header} if header else {}
    responses.post(URL.split("?")[0], status=status, body="busy", headers=headers)
    with pytest.raises(DeliveryError) as info:
        send(SETTINGS.channels[0], _alert(), now=NOW, session=requests.Session(), environ=ENV)
    assert info.value.retry_after == wait and info.value.retriable


@responses.activate
def test_the_outbox_waits_until_the_date_the_receiver_named(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/a.db")
    responses.post(URL.split("?")[0], status=503, body="maintenance",
                   headers={"Retry-After": "Mon, 02 Mar 2026 08:10:00 GMT"})
    enqueue(engine, [_alert()], SETTINGS, NOW)
    assert deliver_due(engine, SETTINGS, NOW, environ=ENV).retrying == 1
    with engine.connect() as conn:
        row = conn.execute(select(ot.alerts)).one()
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + timedelta(minutes=10)  # not the 30 s backoff


def test_outbox_backoff_is_the_shared_formula() -> None:
    assert [backoff(n, SETTINGS).total_seconds() for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]
