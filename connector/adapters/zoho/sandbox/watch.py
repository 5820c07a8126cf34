"""The sandbox's Notifications API: `/crm/v8/actions/watch` (enable, details, replace, update, disable).

A subscription is one (channel_id, module) pair, as Zoho's details answer lists them: one `POST` whose
events name three modules makes three subscriptions of the one channel. Record changes reach `changed`
(an `Org` listener); each change that an active, unexpired subscription watches is handed to the
delivery worker (`delivery.Deliveries`), which POSTs Zoho's notification body to the channel's
`notify_url`. Choices where Zoho's documentation is silent are in docs/zoho.md ("Notifications").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.adapters.zoho.sandbox.params import ApiError, Result
from connector.adapters.zoho.sandbox.store import Org

OPERATIONS = {"create": "insert", "edit": "update", "delete": "delete"}  # event suffix -> notified operation
MAX_ITEMS = 50
MAX_TOKEN = 50  # the v7/v8 pages: "The maximum character length is 50"
MAX_EXPIRY = 7 * 86400  # from v4 on, a week at most ...
DEFAULT_EXPIRY = 3600  # ... and one hour when it is left out or asks for more
MAX_CONDITION_FIELDS = 10
SUBSCRIBED = "Successfully subscribed for actions-watch of the given module"


@dataclass
class Subscription:
    """One module of one channel."""

    channel_id: str
    module: str
    operations: set[str]  # insert | update | delete
    notify_url: str
    token: str | None
    expiry: int  # epoch seconds on the org's clock
    return_values: bool = False
    related: bool = True
    condition: dict[str, Any] | None = None  # the field_selection tree, for updates only
    fields: list[str] = field(default_factory=list)


class _Fault(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.item = {"code": code, "details": details, "message": message, "status": "error"}


Publish = Callable[[Subscription, str, str, list[str], dict[str, Any]], None]


class WatchHandlers:
    """The channels of one org and the `actions/watch` endpoints over them (caller holds `Org.lock`)."""

    def __init__(self, org: Org, base_url: Callable[[], str], publish: Publish | None = None) -> None:
        self.org = org
        self.base_url = base_url
        self.publish = publish
        self.subs: dict[tuple[str, str], Subscription] = {}
        org.listeners.append(self.changed)

    # -- record changes -------------------------------------------------------------------

    def changed(self, module: str, operation: str, rec_id: str, fields: list[str]) -> None:
        """An `Org` listener: hand the change to every live subscription that watches it."""
        if self.publish is None:
            return
        now = self.org.now()
        for sub in list(self.subs.values()):
            if sub.module != module or operation not in sub.operations:
                continue
            if sub.expiry <= now:
                del self.subs[(sub.channel_id, sub.module)]  # an expired channel is gone
                continue
            if operation == "update" and sub.condition is not None and not _matches(sub.condition, fields):
                continue
            values = {}
            if sub.return_values and operation == "update":
                rec = self.org.modules[module].records.get(rec_id, {})
                values = {name: rec.get(name) for name in fields}
            self.publish(sub, operation, rec_id, fields, values)

    def live(self) -> list[Subscription]:
        """Subscriptions not yet expired (expired ones are dropped)."""
        now = self.org.now()
        for key in [k for k, s in self.subs.items() if s.expiry <= now]:
            del self.subs[key]
        return list(self.subs.values())

    # -- routing --------------------------------------------------------------------------

    def route(self, method: str, params: Mapping[str, str], body: Any) -> Result:
        """`/actions/watch` by method."""
        if method == "GET":
            return self.details(params)
        if method == "DELETE":
            return self.disable([c for c in params.get("channel_ids", "").split(",") if c])
        if method in ("POST", "PUT", "PATCH"):
            if method == "PATCH" and isinstance(body, dict) and "watch" not in body and "channel_id" in body:
                body = {"watch": [body]}  # the OpenAPI file shows PATCH with one flat object
            items = body.get("watch") if isinstance(body, dict) else None
            if not isinstance(items, list) or not items:
                raise ApiError(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "watch"})
            if len(items) > MAX_ITEMS:
                raise ApiError(400, "LIMIT_REACHED", "limit reached",
                               {"api_name": "watch", "limit": MAX_ITEMS})
            return self._write(method, items)
        raise ApiError(400, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one", {})

    def _write(self, method: str, items: list[Any]) -> Result:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(self._write_one(method, item, i))
            except _Fault as fault:
                out.append(fault.item)
        ok = sum(1 for o in out if o["status"] == "success")
        if ok == len(out):
            return (201 if method == "POST" else 200), {"watch": out}
        return (207 if ok else 400), {"watch": out}

    def _write_one(self, method: str, item: Any, i: int) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise _Fault("INVALID_DATA", "invalid data", {"json_path": f"$.watch[{i}]"})
        channel_id = _channel_id(item.get("channel_id"), i)
        existing = [s for s in self.live() if s.channel_id == channel_id]
        if method == "PATCH" and not existing:
            raise _Fault("NOT_SUBSCRIBED", "the channel is not subscribed",
                         {"api_name": "channel_id", "json_path": f"$.watch[{i}].channel_id"})
        events = _events(item.get("events"), i, self.org)
        url = _notify_url(item.get("notify_url"), i)
        token = _token(item, i, existing[0].token if method == "PATCH" and existing else None)
        expiry = self._expiry(item.get("channel_expiry"), i)
        conditions = _conditions(item.get("notification_condition"), i)
        if method == "PUT":
            for sub in existing:
                del self.subs[(sub.channel_id, sub.module)]
        if method == "PATCH" and item.get("_delete_events") is True:
            return self._drop_events(channel_id, events)
        made = []
        for module, ops in events.items():
            old = self.subs.get((channel_id, module))
            related = item.get("notify_on_related_action")
            returned = item.get("return_affected_field_values")
            kept = old.operations if method == "PATCH" and old else set()
            sub = Subscription(
                channel_id, module, ops | kept, url, token,
                expiry, bool(returned) if returned is not None else bool(old and old.return_values),
                bool(related) if related is not None else (old.related if old else True),
                conditions.get(module, old.condition if method == "PATCH" and old else None))
            self.subs[(channel_id, module)] = sub
            made.append(self._event(sub))
        message = "Successfully updated the subscribe details" if method == "PATCH" else SUBSCRIBED
        return {"code": "SUCCESS", "details": {"events": made}, "message": message, "status": "success"}

    def _drop_events(self, channel_id: str, events: dict[str, set[str]]) -> dict[str, Any]:
        made = []
        for module, ops in events.items():
            sub = self.subs.get((channel_id, module))
            if sub is None:
                continue
            sub.operations -= ops
            made.append(self._event(sub))
            if not sub.operations:
                del self.subs[(channel_id, module)]
        return {"code": "SUCCESS", "details": {"events": made},
                "message": "Successfully updated the subscribe details", "status": "success"}

    def _expiry(self, raw: Any, i: int) -> int:
        now = self.org.now()
        if raw is None:
            return now + DEFAULT_EXPIRY
        try:
            when = int(datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp())
        except ValueError:
            raise _invalid("channel_expiry", f"$.watch[{i}].channel_expiry",
                           expected_data_type="datetime") from None
        if when <= now:
            raise _invalid("channel_expiry", f"$.watch[{i}].channel_expiry")
        return when if when - now <= MAX_EXPIRY else now + DEFAULT_EXPIRY

    def resource_uri(self, module: str) -> str:
        """The module's URL as notifications and answers name it."""
        return f"{self.base_url()}/crm/v8/{module}"

    def _event(self, sub: Subscription) -> dict[str, Any]:
        return {"channel_expiry": self.org.render_time(sub.expiry),
                "resource_uri": self.resource_uri(sub.module),
                "resource_id": self.org.modules[sub.module].meta["id"], "resource_name": sub.module,
                "channel_id": sub.channel_id}

    def details(self, params: Mapping[str, str]) -> Result:
        """`GET /actions/watch[?module=&channel_id=]`: the live subscriptions (204 when none)."""
        subs = [s for s in self.live()
                if params.get("module") in (None, "", s.module) and params.get("channel_id") in (None, "",
                                                                                                 s.channel_id)]
        if not subs:
            return 204, None
        events = {"insert": "create", "update": "edit", "delete": "delete"}
        rows = [{**self._event(s), "notify_on_related_action": s.related, "return_affected_field_values":
                 s.return_values, "notify_url": s.notify_url, "fields": None,
                 "notification_condition": None if s.condition is None else [s.condition],
                 "events": sorted(f"{s.module}.{events[o]}" for o in s.operations), "token": s.token}
                for s in subs]
        info = {"per_page": 200, "count": len(rows), "page": 1, "more_records": False}
        return 200, {"watch": rows, "info": info}

    def disable(self, channel_ids: list[str]) -> Result:
        """`DELETE /actions/watch?channel_ids=`: every module of those channels."""
        if not channel_ids:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "channel_ids"})
        out = []
        live = self.live()
        for cid in channel_ids:
            subs = [s for s in live if s.channel_id == cid]
            if not subs:
                out.append({"code": "NOT_SUBSCRIBED", "details": {"channel_id": cid},
                            "message": "the channel is not subscribed", "status": "error"})
            for sub in subs:
                del self.subs[(sub.channel_id, sub.module)]
                out.append({"code": "SUCCESS", "details": {
                    "resource_uri": self.resource_uri(sub.module), "channel_id": cid,
                    "resource_id": self.org.modules[sub.module].meta["id"]},
                    "message": "Successfully un-subscribed from actions-watch", "status": "success"})
        ok = sum(1 for o in out if o["status"] == "success")
        return (200 if ok == len(out) else 207 if ok else 400), {"watch": out}


def _invalid(api_name: str, path: str, **extra: Any) -> _Fault:
    return _Fault("INVALID_DATA", "invalid data", {"api_name": api_name, "json_path": path, **extra})


def _channel_id(raw: Any, i: int) -> str:
    if raw is None or raw == "":
        raise _Fault("MANDATORY_NOT_FOUND", "required field not found",
                     {"api_name": "channel_id", "json_path": f"$.watch[{i}].channel_id"})
    if isinstance(raw, bool) or not str(raw).isdigit() or len(str(raw)) > 19:
        raise _Fault("INVALID_DATA", "invalid data", {"api_name": "channel_id", "expected_data_type": "long",
                                                      "json_path": f"$.watch[{i}].channel_id"})
    return str(raw)


def _notify_url(raw: Any, i: int) -> str:
    if raw is None or raw == "":
        raise _Fault("MANDATORY_NOT_FOUND", "required field not found",
                     {"api_name": "notify_url", "json_path": f"$.watch[{i}].notify_url"})
    if not isinstance(raw, str) or len(raw) > 255 or not raw.startswith(("http://", "https://")):
        raise _Fault("INVALID_DATA", "invalid data", {"api_name": "notify_url",
                                                      "json_path": f"$.watch[{i}].notify_url"})
    return raw


def _token(item: dict[str, Any], i: int, kept: str | None) -> str | None:
    if "token" not in item:
        return kept  # PATCH changes only what it names
    raw = item["token"]
    if raw is not None and (not isinstance(raw, str) or len(raw) > MAX_TOKEN):
        raise _invalid("token", f"$.watch[{i}].token")
    return raw


def _events(raw: Any, i: int, org: Org) -> dict[str, set[str]]:
    if not raw:
        raise _Fault("MANDATORY_NOT_FOUND", "required field not found",
                     {"api_name": "events", "json_path": f"$.watch[{i}].events"})
    if not isinstance(raw, list):
        raise _Fault("INVALID_DATA", "invalid data", {"api_name": "events", "expected_data_type": "jsonarray",
                                                      "json_path": f"$.watch[{i}].events"})
    out: dict[str, set[str]] = {}
    for j, event in enumerate(raw):
        module, _, op = str(event).rpartition(".")
        mod = org.module(module) if module else None
        if mod is None or (op != "all" and op not in OPERATIONS):
            raise _Fault("INVALID_DATA", "invalid data", {"api_name": "events",
                                                          "json_path": f"$.watch[{i}].events[{j}]"})
        ops = set(OPERATIONS.values()) if op == "all" else {OPERATIONS[op]}
        out.setdefault(mod.meta["api_name"], set()).update(ops)
    return out


def _conditions(raw: Any, i: int) -> dict[str, dict[str, Any]]:
    """`notification_condition` by module API name (field_selection only, at most 10 fields each)."""
    if raw is None:
        return {}
    path = f"$.watch[{i}].notification_condition"
    if not isinstance(raw, list) or len(raw) > 2:
        raise _invalid("notification_condition", path)
    out = {}
    for k, cond in enumerate(raw):
        here = f"{path}[{k}]"
        if not isinstance(cond, dict) or "type" not in cond:
            raise _Fault("MANDATORY_NOT_FOUND", "required field not found",
                         {"api_name": "type", "json_path": f"{here}.type"})
        if cond["type"] != "field_selection":
            raise _Fault("INVALID_DATA", "invalid data", {"api_name": "type", "json_path": f"{here}.type",
                                                          "supported_values": ["field_selection"]})
        module = cond.get("module")
        if not isinstance(module, dict) or not module.get("api_name"):
            raise _Fault("EXPECTED_FIELD_MISSING", "Specify atleast one field", {"expected_fields": [
                {"api_name": "api_name", "json_path": f"{here}.module.api_name"},
                {"api_name": "id", "json_path": f"{here}.module.id"}]})
        selection = cond.get("field_selection")
        if not isinstance(selection, dict):
            raise _Fault("DEPENDENT_FIELD_MISSING", "DEPENDENT_FIELD_MISSING", {
                "api_name": "field_selection", "json_path": f"{here}.field_selection",
                "dependee": {"api_name": "type", "json_path": f"{here}.type"}})
        if len(_fields_of(selection, f"{here}.field_selection")) > MAX_CONDITION_FIELDS:
            raise _Fault("INVALID_DATA", "invalid data", {"api_name": "field_selection", "maximum_length": 10,
                                                          "json_path": f"{here}.field_selection"})
        out[str(module["api_name"])] = cond
    return out


def _leaf(group: dict[str, Any]) -> str | None:
    """The field a condition leaf names: `{"field": {"api_name": ...}}` (the docs) or `{"api_name": ...}`
    (the OpenAPI file's PATCH example); None for a group."""
    if "field" in group:
        return str((group["field"] or {}).get("api_name"))
    return str(group["api_name"]) if "api_name" in group else None


def _fields_of(group: dict[str, Any], path: str) -> list[str]:
    leaf = _leaf(group)
    if leaf is not None:
        return [leaf]
    if group.get("group_operator") not in ("and", "or"):
        raise _Fault("INVALID_DATA", "invalid data", {"api_name": "group_operator", "supported_values":
                                                      ["or", "and"], "json_path": f"{path}.group_operator"})
    members = group.get("group")
    if not isinstance(members, list) or not members:
        raise _Fault("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "group",
                                                                         "json_path": f"{path}.group"})
    return [name for n, g in enumerate(members) for name in _fields_of(g, f"{path}.group[{n}]")]


def _matches(condition: dict[str, Any], changed: list[str]) -> bool:
    """Whether an update that changed `changed` passes a field_selection condition."""

    def test(group: dict[str, Any]) -> bool:
        leaf = _leaf(group)
        if leaf is not None:
            return leaf in changed
        results = [test(g) for g in group.get("group") or []]
        return all(results) if group.get("group_operator") == "and" else any(results)

    return test(condition["field_selection"])
