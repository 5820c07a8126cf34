"""Zoho's Notifications API as a `PushSource`: one channel over the customer, contract and payment modules.

The channel asks for `{Module}.all` of every module the mapping reads. On a module the connector also
writes (the customer module's balance, tier and flags), edits notify only when a field the sync *reads*
changed (a `field_selection` condition, at most 10 fields), so the sync's own write-back does not call
the receiver back. Renewal is a `PATCH` that names no token, so Zoho keeps the one it has and only the
token's hash needs keeping here; a channel Zoho no longer knows (it lapsed) is subscribed anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connector.adapters.errors import CrmRequestError, UnexpectedAnswer
from connector.adapters.push import Notice, PushSource, Subscription
from connector.adapters.zoho.client import ZohoClient
from connector.adapters.zoho.wire import format_time, parse_time

MAX_CONDITION_FIELDS = 10
GONE = ("NOT_SUBSCRIBED", "INVALID_DATA")  # PATCH of a channel Zoho does not hold (any more)


class ZohoWatch(PushSource):
    """Subscribe/renew/drop one notification channel through a `ZohoClient`.

    `modules` maps each watched module to the fields whose edits should notify (empty: every edit)."""

    max_lifetime = timedelta(days=7)  # from API v4 on; longer asks are cut to one hour by Zoho

    def __init__(self, client: ZohoClient, modules: Mapping[str, Sequence[str]]) -> None:
        self.client = client
        self.modules = {m: list(f) for m, f in modules.items()}

    def channel(self, channel_id: str, url: str, expires_at: datetime, token: str | None) -> dict[str, Any]:
        """The `watch` item that subscribes the channel."""
        item: dict[str, Any] = {
            "channel_id": channel_id, "notify_url": url, "channel_expiry": format_time(expires_at),
            "events": [f"{module}.all" for module in self.modules], "return_affected_field_values": False,
            "notify_on_related_action": False,
        }
        conditions = [_condition(m, f) for m, f in self.modules.items() if 0 < len(f) <= MAX_CONDITION_FIELDS]
        if conditions:
            item["notification_condition"] = conditions
        if token is not None:
            item["token"] = token
        return item

    def subscribe(self, channel_id: str, url: str, token: str, expires_at: datetime) -> Subscription:
        """`POST /actions/watch` for the channel."""
        results = self.client.watch_enable([self.channel(channel_id, url, expires_at, token)])
        return _subscription(channel_id, _one(results, "subscribe"))

    def renew(self, channel_id: str, url: str, expires_at: datetime) -> Subscription | None:
        """`PATCH /actions/watch` with a new expiry and no token (Zoho keeps it)."""
        try:
            results = self.client.watch_update([self.channel(channel_id, url, expires_at, None)])
            return _subscription(channel_id, _one(results, "renew"))
        except CrmRequestError as exc:
            if exc.code in GONE:
                return None
            raise

    def unsubscribe(self, channel_id: str) -> None:
        """`DELETE /actions/watch?channel_ids=`; a channel Zoho does not hold is already gone."""
        try:
            self.client.watch_disable([channel_id])
        except CrmRequestError as exc:
            if exc.code not in GONE and exc.code:
                raise

    def details(self, channel_id: str) -> Subscription | None:
        """`GET /actions/watch?channel_id=`."""
        rows = [r for r in self.client.watch_details(channel_id) if str(r.get("channel_id")) == channel_id]
        if not rows:
            return None
        expiry = min(parse_time(str(r["channel_expiry"])) for r in rows)
        return Subscription(channel_id=channel_id, expires_at=expiry,
                            resources=tuple(str(r.get("resource_name")) for r in rows))


def _condition(module: str, fields: Sequence[str]) -> dict[str, Any]:
    return {"type": "field_selection", "module": {"api_name": module},
            "field_selection": {"group_operator": "or",
                                "group": [{"field": {"api_name": name}} for name in fields]}}


def _one(results: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if len(results) != 1:
        raise UnexpectedAnswer(f"Zoho answered {len(results)} results to one channel {what}", crm="zoho")
    item = results[0]
    if str(item.get("status", "")).lower() != "success":
        raise CrmRequestError(f"Zoho refused to {what} the notification channel: {item.get('message')}",
                              crm="zoho", code=str(item.get("code", "")), details=item.get("details"))
    return item


def _subscription(channel_id: str, item: dict[str, Any]) -> Subscription:
    events = (item.get("details") or {}).get("events") or []
    if not events:
        raise UnexpectedAnswer("Zoho subscribed the channel to no module", crm="zoho")
    # Zoho cuts an expiry it will not grant to one hour: the answer, not the ask, says when it lapses.
    expiry = min(parse_time(str(e["channel_expiry"])) for e in events)
    return Subscription(channel_id=channel_id, expires_at=expiry,
                        resources=tuple(str(e.get("resource_name")) for e in events))


def parse_notice(body: Any) -> Notice:
    """A notification body as Zoho POSTs it; ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("channel_id", "module", "operation", "ids") if k not in body]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    ids = body["ids"]
    if not isinstance(ids, list):
        raise ValueError("ids is not a list")
    token = body.get("token")
    return Notice(channel_id=str(body["channel_id"]), token=None if token is None else str(token),
                  resource=str(body["module"]), operation=str(body["operation"]), ids=tuple(map(str, ids)))
