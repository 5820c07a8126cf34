"""The sandbox's Notifications API: watch answers and errors as Zoho documents them, notification bodies,
channel expiry and the retries of a failed delivery, all on the sandbox's (fake) clock."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from zoho_helpers import START, FakeClock

from connector.adapters.errors import CrmRequestError
from connector.adapters.http import RetryPolicy
from connector.adapters.zoho.auth import ZohoAuth, ZohoAuthConfig
from connector.adapters.zoho.client import ZohoClient
from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.adapters.zoho.sandbox.delivery import RETRY_AFTER
from connector.adapters.zoho.watch import ZohoWatch, parse_notice

NOTICE_KEYS = {"server_time", "query_params", "module", "resource_uri", "ids", "affected_fields", "operation",
               "channel_id", "token"}


class Receiver:
    """A loopback notify_url that records what it is sent and answers `status`; stop/start keep the port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.got: list[dict[str, Any]] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/zoho/main?src=zoho"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                outer.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[ZohoSandbox]:
    sandbox = ZohoSandbox(seed=7, clock=clock.seconds)
    yield sandbox
    sandbox.app.deliveries.stop()


@pytest.fixture
def client(sb: ZohoSandbox, clock: FakeClock) -> ZohoClient:
    session = sb.session()
    auth = ZohoAuth.from_env(ZohoAuthConfig(accounts_url=sb.accounts_url, api_domain=sb.api_domain),
                             session=session, environ=sb.env())
    auth.clock = clock.seconds
    return ZohoClient(auth, session=session, retry=RetryPolicy(max_attempts=2, sleep=lambda s: None))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _iso(clock: FakeClock, **delta: float) -> str:
    return (clock() + timedelta(**delta)).isoformat()


def _watch(url: str, clock: FakeClock, **over: Any) -> dict[str, Any]:
    return {"channel_id": "1000000068001", "events": ["Accounts.all", "Prepaid_Payments.all"],
            "notify_url": url, "token": "TOKEN_FOR_VERIFICATION_OF_1000000068001",
            "channel_expiry": _iso(clock, hours=20), **over}


def test_enable_answers_each_module_with_its_expiry(client: ZohoClient, clock: FakeClock) -> None:
    resp = client.request("POST", "/actions/watch", body={"watch": [_watch("https://example.com/n", clock)]})
    assert resp.status == 201
    [item] = resp.body["watch"]
    assert item["code"] == "SUCCESS" and item["status"] == "success"
    assert item["message"] == "Successfully subscribed for actions-watch of the given module"
    events = item["details"]["events"]
    assert [e["resource_name"] for e in events] == ["Accounts", "Prepaid_Payments"]
    for e in events:
        assert set(e) == {"channel_expiry", "resource_uri", "resource_id", "resource_name", "channel_id"}
        assert e["channel_id"] == "1000000068001"
        assert e["resource_uri"].endswith(f"/crm/v8/{e['resource_name']}")
        assert datetime.fromisoformat(e["channel_expiry"]) == clock() + timedelta(hours=20)


@pytest.mark.parametrize(("asked", "granted"), [
    ({"days": 7}, timedelta(days=7)),  # a week is the most from v4 on ...
    ({"days": 8}, timedelta(hours=1)),  # ... more falls back to one hour
    (None, timedelta(hours=1)),  # as does none
])
def test_channel_expiry_is_capped_at_a_week_and_defaults_to_an_hour(
        client: ZohoClient, clock: FakeClock, asked: dict[str, float] | None, granted: timedelta) -> None:
    item = _watch("https://example.com/n", clock, channel_expiry=_iso(clock, **asked) if asked else None)
    if asked is None:
        del item["channel_expiry"]
    [result] = client.watch_enable([item])
    expiry = datetime.fromisoformat(result["details"]["events"][0]["channel_expiry"])
    assert expiry == clock() + granted


@pytest.mark.parametrize(("change", "code", "api_name"), [
    ({"notify_url": None}, "MANDATORY_NOT_FOUND", "notify_url"),
    ({"channel_id": None}, "MANDATORY_NOT_FOUND", "channel_id"),
    ({"events": None}, "MANDATORY_NOT_FOUND", "events"),
    ({"events": ["Nowhere.all"]}, "INVALID_DATA", "events"),
    ({"events": ["Accounts.touch"]}, "INVALID_DATA", "events"),
    ({"token": "x" * 51}, "INVALID_DATA", "token"),
    ({"channel_id": "abc"}, "INVALID_DATA", "channel_id"),
])
def test_a_bad_channel_is_refused_naming_the_field(client: ZohoClient, clock: FakeClock,
                                                   change: dict[str, Any], code: str, api_name: str) -> None:
    item = {k: v for k, v in {**_watch("https://example.com/n", clock), **change}.items() if v is not None}
    good = _watch("https://example.com/m", clock, channel_id="5")
    resp = client.request("POST", "/actions/watch", body={"watch": [item, good]})
    assert resp.status == 207  # one refused, one made
    bad, ok = resp.body["watch"]
    assert bad["code"] == code and bad["status"] == "error" and bad["details"]["api_name"] == api_name
    assert ok["status"] == "success"
    with pytest.raises(CrmRequestError):  # all refused: 400, and the watch adapter says why
        ZohoWatch(client, {"Accounts": []}).subscribe("1", "ftp://nowhere", "t", clock() + timedelta(hours=1))


def test_details_update_and_disable(client: ZohoClient, clock: FakeClock) -> None:
    assert client.watch_details() == []  # 204: no channel yet
    client.watch_enable([_watch("https://example.com/n", clock)])
    rows = client.watch_details("1000000068001")
    assert {r["resource_name"] for r in rows} == {"Accounts", "Prepaid_Payments"}
    assert {e for r in rows for e in r["events"]} >= {"Accounts.create", "Accounts.edit", "Accounts.delete"}
    later = _iso(clock, hours=30)
    [patched] = client.watch_update([{"channel_id": "1000000068001", "notify_url": "https://example.com/n",
                                      "events": ["Accounts.all"], "channel_expiry": later}])
    assert patched["message"] == "Successfully updated the subscribe details"
    rows = {r["resource_name"]: r for r in client.watch_details("1000000068001")}
    assert datetime.fromisoformat(rows["Accounts"]["channel_expiry"]) == datetime.fromisoformat(later)
    assert rows["Accounts"]["token"] == "TOKEN_FOR_VERIFICATION_OF_1000000068001"  # PATCH kept it
    unknown = {"channel_id": "42", "notify_url": "https://x.example", "events": ["Deals.all"]}
    [gone] = client.watch_update([unknown])
    assert gone["code"] == "NOT_SUBSCRIBED"
    results = client.watch_disable(["1000000068001"])
    assert [r["message"] for r in results] == ["Successfully un-subscribed from actions-watch"] * 2
    assert client.watch_details() == []


def _pay(sb: ZohoSandbox, account_id: str, amount: str = "10.00") -> str:
    org = sb.org
    with org.lock:
        rec = org.insert(org.modules["Prepaid_Payments"], {
            "Name": "PAY-PUSH", "Account": {"id": account_id, "name": "x"}, "Amount": Decimal(amount),
            "Currency": "USD", "Payment_Date": "2026-01-01", "Payment_Status": "Received"})
    return str(rec["id"])


def _account(sb: ZohoSandbox) -> str:
    return next(iter(sb.org.modules["Accounts"].records))


def test_a_write_is_notified_as_zoho_documents_it(client: ZohoClient, sb: ZohoSandbox, clock: FakeClock,
                                                  receiver: Receiver) -> None:
    watch = ZohoWatch(client, {"Accounts": ["Account_Name", "Currency"], "Prepaid_Payments": []})
    sub = watch.subscribe("1000000068001", receiver.url, "tok-1", clock() + timedelta(hours=20))
    assert set(sub.resources) == {"Accounts", "Prepaid_Payments"}
    account = _account(sb)
    client.update("Accounts", [{"id": account, "Account_Name": "Renamed Ltd"}])
    client.update("Accounts", [{"id": account, "Prepaid_Balance": Decimal("5.00")}])  # not a watched field
    pay = _pay(sb, account)
    assert sb.app.deliveries.wait_for(lambda: len(receiver.got) >= 2, 10)
    renamed, paid = receiver.got[:2]
    assert set(renamed) == NOTICE_KEYS and renamed["operation"] == "update" and renamed["ids"] == [account]
    assert renamed["affected_fields"] == [{account: ["Account_Name"]}]
    assert renamed["query_params"] == {"src": "zoho"} and renamed["token"] == "tok-1"
    assert renamed["server_time"] == int(clock.seconds() * 1000)
    assert paid["module"] == "Prepaid_Payments" and paid["operation"] == "insert" and paid["ids"] == [pay]
    notice = parse_notice(paid)
    assert notice.channel_id == "1000000068001" and notice.ids == (pay,) and notice.token == "tok-1"
    assert sb.app.deliveries.wait_for(lambda: not sb.app.deliveries.queue, 5) and len(receiver.got) == 2


def test_a_batch_write_is_one_notification(client: ZohoClient, sb: ZohoSandbox, clock: FakeClock,
                                           receiver: Receiver) -> None:
    client.watch_enable([_watch(receiver.url, clock, events=["Accounts.edit"])])
    ids = list(sb.org.modules["Accounts"].records)[:5]
    client.update("Accounts", [{"id": i, "Phone": "555"} for i in ids])
    assert sb.app.deliveries.wait_for(lambda: bool(receiver.got), 10)
    assert receiver.got[0]["ids"] == ids and len(receiver.got) == 1


def test_a_receiver_that_was_down_gets_the_notification_on_a_retry(
        client: ZohoClient, sb: ZohoSandbox, clock: FakeClock, receiver: Receiver) -> None:
    deliveries = sb.app.deliveries
    client.watch_enable([_watch(receiver.url, clock)])
    receiver.stop()
    pay = _pay(sb, _account(sb))
    assert deliveries.wait_for(lambda: deliveries.failed == 1, 10)  # refused connection
    receiver.start()
    receiver.status = 503
    clock.advance(RETRY_AFTER[0])
    deliveries.kick()
    assert deliveries.wait_for(lambda: deliveries.failed == 2, 10)  # up, but answering 503
    receiver.status = 200
    clock.advance(RETRY_AFTER[1] - 1)
    deliveries.kick()
    assert not deliveries.wait_for(lambda: bool(deliveries.delivered), 0.3)  # not due yet
    clock.advance(1)
    deliveries.kick()
    assert deliveries.wait_for(lambda: bool(deliveries.delivered), 10)
    assert [g["ids"] for g in receiver.got] == [[pay], [pay]] and receiver.got[-1]["server_time"] == int(
        clock.seconds() * 1000)


def test_undeliverable_notifications_are_dropped_after_the_last_retry(
        client: ZohoClient, sb: ZohoSandbox, clock: FakeClock, receiver: Receiver) -> None:
    deliveries = sb.app.deliveries
    client.watch_enable([_watch(receiver.url, clock, channel_expiry=_iso(clock, days=6))])
    receiver.status = 500
    _pay(sb, _account(sb))
    for n, wait in enumerate(RETRY_AFTER, start=1):
        assert deliveries.wait_for(lambda n=n: deliveries.failed == n, 10)  # type: ignore[misc]
        clock.advance(wait)
        deliveries.kick()
    assert deliveries.wait_for(lambda: bool(deliveries.dropped), 10)
    assert len(receiver.got) == len(RETRY_AFTER) + 1 and not deliveries.queue


def test_an_expired_channel_notifies_nothing_and_is_gone(client: ZohoClient, sb: ZohoSandbox,
                                                         clock: FakeClock, receiver: Receiver) -> None:
    client.watch_enable([_watch(receiver.url, clock, channel_expiry=_iso(clock, minutes=30))])
    clock.advance(minutes=31)
    _pay(sb, _account(sb))
    assert client.watch_details() == []
    assert not sb.app.deliveries.wait_for(lambda: bool(receiver.got), 0.3)
    watch = ZohoWatch(client, {"Accounts": [], "Prepaid_Payments": []})
    # Zoho has lost it: the caller subscribes anew
    assert watch.renew("1000000068001", receiver.url, clock() + timedelta(hours=5)) is None


def test_renewal_keeps_the_token(client: ZohoClient, sb: ZohoSandbox, clock: FakeClock,
                                 receiver: Receiver) -> None:
    watch = ZohoWatch(client, {"Accounts": ["Account_Name"], "Prepaid_Payments": []})
    first = watch.subscribe("77", receiver.url, "secret-token", clock() + timedelta(hours=2))
    clock.advance(minutes=90)
    renewed = watch.renew("77", receiver.url, clock() + timedelta(days=1))
    assert renewed is not None and renewed.expires_at > first.expires_at
    assert renewed.expires_at == (clock() + timedelta(days=1)).replace(microsecond=0)
    clock.advance(hours=3)  # past the first expiry, within the renewed one
    _pay(sb, _account(sb))
    assert sb.app.deliveries.wait_for(lambda: bool(receiver.got), 10)
    assert receiver.got[0]["token"] == "secret-token"
    details = watch.details("77")
    assert details is not None and details.expires_at == renewed.expires_at
    assert datetime.fromtimestamp(START, UTC) < details.expires_at
