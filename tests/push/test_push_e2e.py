"""Push end to end against the Zoho sandbox: `notifications enable|status|disable`, a payment recorded in
Zoho reaching the account's balance field through notification, receiver, debounced run and write-back;
a receiver that was down; a channel renewed before it lapses, and one subscribed anew after it lapsed.
Waits are on events (the sandbox's deliveries, the debouncer going idle), each bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from push_world import World, build_world, runner
from sqlalchemy import select

from connector.adapters.zoho.sandbox.delivery import RETRY_AFTER
from connector.app import renew_push_channels
from connector.cli import app as cli
from connector.push.channels import Channels
from connector.sync import tables as t
from connector.timeutil import utcnow

WAIT = 60.0  # seconds, at most, for any one event on this loaded machine


@pytest.fixture
def world(tmp_path: Path, clean_env: None) -> Iterator[World]:
    w = build_world(tmp_path)
    yield w
    w.close()


def _enable(w: World) -> dict[str, object]:
    res = runner.invoke(cli, ["notifications", "enable", "--config", str(w.cfg), "--public-url", w.public_url,
                              "--json"])
    assert res.exit_code == 0, res.stdout
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _settle(w: World, delivered: int) -> None:
    """Wait until the sandbox has delivered `delivered` notifications and the runs they armed are done."""
    deliveries = w.sb.app.deliveries
    assert deliveries.wait_for(lambda: len(deliveries.delivered) >= delivered, WAIT), deliveries.queue
    assert w.hub.debouncer.wait_idle(WAIT)


def _push_runs(w: World) -> list[str]:
    with w.db.connect() as conn:
        return list(conn.execute(select(t.runs.c.status).where(t.runs.c.trigger == "push")
                                 .order_by(t.runs.c.id)).scalars())


def test_enable_status_disable(world: World) -> None:
    doc = _enable(world)
    assert doc["enabled"] is True and doc["notify_url"] == f"{world.public_url}/hooks/zoho/zoho"
    assert doc["resources"] == "Accounts,Deals,Prepaid_Payments" and "token" not in " ".join(map(str, doc))
    subs = world.sb.app.watch.live()
    assert {s.module for s in subs} == {"Accounts", "Deals", "Prepaid_Payments"}
    assert {s.channel_id for s in subs} == {doc["channel_id"]}
    accounts = next(s for s in subs if s.module == "Accounts")
    assert accounts.condition is not None  # the write-back fields do not notify
    status = runner.invoke(cli, ["notifications", "status", "--config", str(world.cfg), "--json"])
    [row] = json.loads(status.stdout)["channels"]
    assert row["enabled"] and row["channel_id"] == doc["channel_id"] and "token_sha256" not in row
    assert world.sb.config.client_secret not in status.stdout
    off = runner.invoke(cli, ["notifications", "disable", "--config", str(world.cfg), "--json"])
    assert off.exit_code == 0 and json.loads(off.stdout)["disabled"] is True
    assert world.sb.app.watch.live() == []
    status = runner.invoke(cli, ["notifications", "status", "--config", str(world.cfg), "--json"])
    assert json.loads(status.stdout)["channels"] == [{"connection": "zoho", "enabled": False}]


def test_a_payment_in_zoho_reaches_the_balance_field(world: World) -> None:
    _enable(world)
    account, currency = world.funded_account()
    before = world.balance(account["id"])
    assert before is not None
    world.user.pay(account, Decimal("123"), currency, date.today().isoformat())
    _settle(world, 1)
    assert world.balance(account["id"]) == before + Decimal("123")
    assert _push_runs(world) == ["ok"]  # the write-back itself did not call the receiver again
    assert not world.hub.debouncer.pending()


def test_a_receiver_that_was_down_gets_the_payment_on_the_retry(world: World) -> None:
    _enable(world)
    deliveries = world.sb.app.deliveries
    account, currency = world.funded_account()
    before = world.balance(account["id"])
    assert before is not None
    world.receiver.stop()
    world.user.pay(account, Decimal("77"), currency, date.today().isoformat())
    assert deliveries.wait_for(lambda: deliveries.failed >= 1, WAIT)
    assert world.balance(account["id"]) == before and _push_runs(world) == []
    world.receiver.start()
    world.sb.config.clock_offset += RETRY_AFTER[0]  # the sandbox's clock reaches the retry
    deliveries.kick()
    _settle(world, 1)
    assert world.balance(account["id"]) == before + Decimal("77")
    assert _push_runs(world) == ["ok"]


def test_a_channel_is_renewed_before_it_lapses_and_subscribed_anew_after(world: World) -> None:
    sb = world.sb

    def org_now() -> datetime:  # our clock, moved as far as the sandbox's
        return utcnow() + timedelta(seconds=sb.config.clock_offset)

    channels = Channels(world.db, clock=org_now, lifetime=timedelta(minutes=8))
    from connector.api.hooks import hook_url
    from connector.app import build_push_source

    source = build_push_source(world.loaded, "zoho", world.db)
    assert source is not None
    first = channels.enable("zoho", source, hook_url(world.public_url, "zoho", "zoho"))
    assert renew_push_channels(world.loaded, world.db, channels) == []  # not due yet
    sb.config.clock_offset += 7 * 60  # a minute left: due
    assert renew_push_channels(world.loaded, world.db, channels) == ["zoho"]
    renewed = channels.get("zoho")
    assert renewed is not None and renewed.expires_at > first.expires_at and renewed.renewed_at is not None
    sb.config.clock_offset += 3 * 60  # past the first expiry, inside the renewed one
    account, currency = world.funded_account()
    before = world.balance(account["id"])
    assert before is not None
    world.user.pay(account, Decimal("10"), currency, date.today().isoformat())
    _settle(world, 1)  # delivered with the token given at enable: renewal kept it
    assert world.balance(account["id"]) == before + Decimal("10")
    sb.config.clock_offset += 10 * 60  # the renewed channel lapses too: Zoho drops it
    assert sb.app.watch.live() == []
    assert renew_push_channels(world.loaded, world.db, channels) == ["zoho"]
    again = channels.get("zoho")
    assert again is not None and again.channel_id == first.channel_id and again.enabled_at > first.enabled_at
    world.user.pay(account, Decimal("20"), currency, date.today().isoformat())
    _settle(world, 2)
    assert world.balance(account["id"]) == before + Decimal("30")
    assert _push_runs(world) == ["ok", "ok"] and channels.get("zoho").refused == 0  # type: ignore[union-attr]
