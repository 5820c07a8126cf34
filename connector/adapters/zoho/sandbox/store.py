"""The sandbox org's state: records with 1-second Modified_Time, sorted indexes, validation, deletions.

All methods expect the caller to hold `Org.lock`; the HTTP layer takes it once per request.
Values are kept as Zoho returns them (numbers as Decimal/int, lookups as {name, id}).
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from connector.adapters.zoho.sandbox.schema import SYSTEM_FIELDS, default_modules

ID_PREFIX = 4876876000000000000
DUP_CHECK = {"Accounts": "Account_Name", "Deals": "Deal_Name", "Contacts": "Email"}
NOT_UPSERTABLE = {"Tasks", "Calls", "Events", "Notes"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Zoho's documented input formats: yyyy-MM-dd and yyyy-MM-ddTHH:mm:ss±HH:mm (a trailing Z is taken too).
# Python's fromisoformat alone would also take 20260105, 2026-W01-1, a space for T and fractions.
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)$")
_Bad = Callable[..., "RecordFault"]  # builds the INVALID_DATA fault of the field being checked
ChangeListener = Callable[[str, str, str, list[str]], None]  # module, insert|update|delete, id, fields


class RecordFault(Exception):
    """A per-record error item (code, message, details) for a write response."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.item = {"code": code, "details": details, "message": message, "status": "error"}


@dataclass
class ModuleStore:
    """Records of one module plus sorted (key, id) indexes for paging."""

    meta: dict[str, Any]
    fields: list[dict[str, Any]]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_mtime: list[tuple[int, int]] = field(default_factory=list)
    by_ctime: list[tuple[int, int]] = field(default_factory=list)
    by_id: list[tuple[int, int]] = field(default_factory=list)
    lookup_index: dict[str, dict[str, str]] = field(default_factory=dict)
    deleted: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.field_map = {f["api_name"]: f for f in self.fields}
        self.indexed = [f["api_name"] for f in self.fields if f.get("unique")]
        dup = DUP_CHECK.get(self.meta["api_name"]) or ("Name" if "Name" in self.field_map else None)
        if dup and dup not in self.indexed:
            self.indexed.append(dup)
        self.lookup_index = {name: {} for name in self.indexed}

    def index(self, sort_by: str) -> list[tuple[int, int]]:
        """The sorted index for `sort_by` (id, Created_Time or Modified_Time)."""
        return {"Modified_Time": self.by_mtime, "Created_Time": self.by_ctime}.get(sort_by, self.by_id)

    def add_field(self, meta: dict[str, Any]) -> None:
        """Register a newly created custom field."""
        self.fields.append(meta)
        self.field_map[meta["api_name"]] = meta
        if meta.get("unique"):
            self.indexed.append(meta["api_name"])
            self.lookup_index[meta["api_name"]] = {}


class Org:
    """One emulated Zoho CRM org: users, modules, records, deletions and page tokens."""

    def __init__(self, *, clock: Callable[[], float] = time.time, utc_offset_minutes: int = 330) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.tz = timezone(timedelta(minutes=utc_offset_minutes))
        self.modules: dict[str, ModuleStore] = {
            api: ModuleStore(spec["module"], spec["fields"]) for api, spec in default_modules().items()}
        self._next = 1000
        self.users: list[dict[str, Any]] = []
        self.current_user = self.add_user("Sync Bot", "sync.bot@sandbox.example")
        self.page_tokens: dict[str, dict[str, Any]] = {}
        # Told of every record change (module, operation, id, changed fields): the watch API's feed.
        self.listeners: list[ChangeListener] = []

    # -- time and ids ---------------------------------------------------------------------

    def now(self) -> int:
        """Current time in whole seconds (Zoho keeps 1-second resolution)."""
        return int(self.clock())

    def render_time(self, epoch: int) -> str:
        """An instant rendered like Zoho: ISO 8601 with the org's UTC offset, no fraction."""
        return datetime.fromtimestamp(epoch, self.tz).isoformat()

    def new_id(self) -> str:
        """A fresh 19-digit record id."""
        self._next += 1
        return str(ID_PREFIX + self._next)

    def add_user(self, name: str, email: str) -> dict[str, Any]:
        """Create an active CRM user."""
        user = {"id": self.new_id(), "full_name": name, "email": email, "status": "active",
                "first_name": name.split()[0], "last_name": name.split()[-1],
                "role": {"name": "CEO", "id": "4876876000000015969"},
                "profile": {"name": "Administrator", "id": "4876876000000015972"},
                "time_zone": "Asia/Kolkata", "locale": "en_US", "confirm": True}
        self.users.append(user)
        return user

    def org_info(self) -> dict[str, Any]:
        """The org as `GET /org` describes it (multi-currency enabled, home currency USD)."""
        return {"id": "4876876000000000001", "company_name": "Prepaid Sync Sandbox", "alias": None,
                "primary_email": self.current_user["email"], "time_zone": "Asia/Kolkata", "iso_code": "USD",
                "currency": "US Dollar - USD", "currency_symbol": "$", "currency_locale": "en_US",
                "mc_status": True, "country_code": "IN", "domain_name": "org4876876000000000001",
                "zgid": "4876876000000000001", "type": "production", "primary_zuid": self.current_user["id"],
                "privacy_settings": False, "hipaa_compliance_enabled": False, "license_details": {
                    "paid": True, "paid_type": "enterprise", "users_license_purchased": 10}}

    def user_ref(self, user: dict[str, Any], with_email: bool = True) -> dict[str, Any]:
        """A user as lookups show it."""
        ref = {"name": user["full_name"], "id": user["id"]}
        if with_email:
            ref["email"] = user["email"]
        return ref

    def module(self, api_name: str) -> ModuleStore | None:
        """A module by API name (case-insensitive like Zoho)."""
        found = self.modules.get(api_name)
        if found is None:
            for name, store in self.modules.items():
                if name.lower() == api_name.lower():
                    return store
        return found

    # -- rendering ------------------------------------------------------------------------

    def render(self, mod: ModuleStore, rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        """A record as JSON, limited to `fields` (id always included)."""
        names = fields if fields is not None else [f["api_name"] for f in mod.fields] + (
            ["$se_module"] if "What_Id" in mod.field_map else [])
        out: dict[str, Any] = {}
        for name in names:
            if name == "Modified_Time":
                out[name] = self.render_time(rec["_mtime"])
            elif name == "Created_Time":
                out[name] = self.render_time(rec["_ctime"])
            elif name in mod.field_map or name.startswith("$"):
                value = rec.get(name)
                out[name] = self.render_time(value) if isinstance(value, int) and \
                    mod.field_map.get(name, {}).get("data_type") == "datetime" else value
        out["id"] = rec["id"]
        if "Currency" in mod.field_map:
            out["$currency_symbol"] = {"EUR": "€", "GBP": "£", "INR": "₹", "JPY": "¥", "CNY": "¥"}.get(
                str(rec.get("Currency")), "$")
        out["$approval_state"] = "approved"
        return out

    # -- writes ---------------------------------------------------------------------------

    def _reindex(self, mod: ModuleStore, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
        num = int(rec["id"])
        if old is not None:
            self._unindex(mod, old)
        bisect.insort(mod.by_mtime, (rec["_mtime"], num))
        bisect.insort(mod.by_ctime, (rec["_ctime"], num))
        bisect.insort(mod.by_id, (num, num))
        for name in mod.indexed:
            value = rec.get(name)
            if value not in (None, ""):
                mod.lookup_index[name].setdefault(str(value).lower(), rec["id"])

    def _unindex(self, mod: ModuleStore, old: dict[str, Any]) -> None:
        num = int(old["id"])
        for lst, key in ((mod.by_mtime, (old["_mtime"], num)), (mod.by_ctime, (old["_ctime"], num)),
                         (mod.by_id, (num, num))):
            pos = bisect.bisect_left(lst, key)
            if pos < len(lst) and lst[pos] == key:
                del lst[pos]
        for name in mod.indexed:
            value = old.get(name)
            if value not in (None, "") and mod.lookup_index[name].get(str(value).lower()) == old["id"]:
                del mod.lookup_index[name][str(value).lower()]

    def insert(self, mod: ModuleStore, values: dict[str, Any], *, owner: dict[str, Any] | None = None,
               at: int | None = None) -> dict[str, Any]:
        """Store a new (already validated) record and return it."""
        now = self.now() if at is None else at
        actor = self.user_ref(self.current_user, with_email=False)
        rec: dict[str, Any] = {"id": self.new_id(), "_mtime": now, "_ctime": now, "Created_By": actor,
                               "Modified_By": actor, "Owner": self.user_ref(owner or self.current_user)}
        rec.update(values)
        mod.records[rec["id"]] = rec
        self._reindex(mod, rec, None)
        self._changed(mod, "insert", rec["id"], list(values))
        return rec

    def update(self, mod: ModuleStore, rec_id: str, values: dict[str, Any], *,
               at: int | None = None) -> dict[str, Any]:
        """Apply validated values to a record; Modified_Time moves to now."""
        old = mod.records[rec_id]
        rec = dict(old)
        rec.update(values)
        rec["_mtime"] = self.now() if at is None else at
        rec["Modified_By"] = self.user_ref(self.current_user, with_email=False)
        mod.records[rec_id] = rec
        self._reindex(mod, rec, old)
        self._changed(mod, "update", rec_id, [k for k, v in values.items() if old.get(k) != v])
        return rec

    def delete(self, mod: ModuleStore, rec_id: str) -> None:
        """Move a record to the recycle bin."""
        old = mod.records.pop(rec_id)
        self._unindex(mod, old)
        actor = self.user_ref(self.current_user, with_email=False)
        display = old.get(DUP_CHECK.get(mod.meta["api_name"],
                                        "Name")) or old.get("Subject") or old.get("Name")
        mod.deleted.append({"deleted_by": actor, "id": rec_id, "display_name": display, "type": "recycle",
                            "created_by": old.get("Created_By"), "_deleted": self.now()})
        self._changed(mod, "delete", rec_id, [])

    def _changed(self, mod: ModuleStore, operation: str, rec_id: str, fields: list[str]) -> None:
        for listener in self.listeners:
            listener(mod.meta["api_name"], operation, rec_id, fields)

    def write_result(self, rec: dict[str, Any], message: str) -> dict[str, Any]:
        """The success item Zoho returns for a written record."""
        return {"code": "SUCCESS", "details": {
            "Modified_Time": self.render_time(rec["_mtime"]), "Modified_By": rec["Modified_By"],
            "Created_Time": self.render_time(rec["_ctime"]), "id": rec["id"], "Created_By": rec["Created_By"],
            "$approval_state": "approved"}, "message": message, "status": "success"}

    # -- validation -----------------------------------------------------------------------

    def validate(self, mod: ModuleStore, item: Any, index: int, *, existing: dict[str, Any] | None
                 ) -> dict[str, Any]:
        """Check one input record against field metadata; returns the values to store."""
        if not isinstance(item, dict):
            raise RecordFault("INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})
        out: dict[str, Any] = {}
        for name, value in item.items():
            if name in ("id", "$se_module") or name in SYSTEM_FIELDS[1:]:
                continue
            meta = mod.field_map.get(name)
            if meta is None or meta.get("field_read_only"):
                continue  # Zoho ignores unknown and read-only keys
            out[name] = self._check_value(mod, meta, value, index)
        if "What_Id" in mod.field_map:
            self._check_se_module(item, out, index)
        merged = {**(existing or {}), **out}
        for meta in mod.fields:
            if meta.get("system_mandatory") and merged.get(meta["api_name"]) in (None, "", []):
                raise RecordFault("MANDATORY_NOT_FOUND", "required field not found", {
                    "api_name": meta["api_name"], "json_path": f"$.data[{index}].{meta['api_name']}"})
        for name in mod.indexed:
            meta = mod.field_map[name]
            value = out.get(name)
            if meta.get("unique") and value not in (None, ""):
                holder = mod.lookup_index[name].get(str(value).lower())
                if holder and (existing is None or holder != existing["id"]):
                    raise RecordFault("DUPLICATE_DATA", "duplicate data", {
                        "api_name": name, "json_path": f"$.data[{index}].{name}",
                        "duplicate_record": {"id": holder, "module": {"api_name": mod.meta["api_name"],
                                                                      "id": mod.meta["id"]}}})
        return out

    def _check_se_module(self, item: dict[str, Any], out: dict[str, Any], index: int) -> None:
        what = out.get("What_Id")
        if what is None:
            return
        se_module = item.get("$se_module")
        target = self.module(str(se_module)) if se_module else None
        if target is None:
            raise RecordFault("MANDATORY_NOT_FOUND", "required field not found",
                              {"api_name": "$se_module", "json_path": f"$.data[{index}].$se_module"})
        if what["id"] not in target.records:
            raise RecordFault(
                "INVALID_DATA", "the related id given seems to be invalid",
                {"api_name": "What_Id", "json_path": f"$.data[{index}].What_Id", "id": what["id"]})
        out["What_Id"] = {"name": target.records[what["id"]].get(
            DUP_CHECK.get(target.meta["api_name"], "Name")), "id": what["id"]}
        out["$se_module"] = target.meta["api_name"]

    def _check_value(self, mod: ModuleStore, meta: dict[str, Any], value: Any, index: int) -> Any:
        name = meta["api_name"]
        dtype = meta["data_type"]

        def bad(expected: str | None = None, message: str = "invalid data", **extra: Any) -> RecordFault:
            """An INVALID_DATA fault for this field."""
            details = {"expected_data_type": expected or dtype, "api_name": name,
                       "json_path": f"$.data[{index}].{name}", **extra}
            return RecordFault("INVALID_DATA", message, details)

        if value is None:
            return None
        if dtype in ("text", "textarea", "email", "phone", "website", "autonumber"):
            if not isinstance(value, str):
                raise bad()
            if len(value) > int(meta["length"]):
                raise bad(message="invalid data", maximum_length=meta["length"])
            if dtype == "email" and value and not _EMAIL.match(value):
                raise bad()
            return value
        if dtype == "picklist":
            allowed = [p["actual_value"] for p in meta["pick_list_values"]]
            if not isinstance(value, str) or (allowed and value not in allowed):
                raise bad(message="invalid data")
            return value
        if dtype == "multiselectpicklist":
            allowed = [p["actual_value"] for p in meta["pick_list_values"]]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad()
            if allowed and any(v not in allowed for v in value):
                raise bad(message="invalid data")
            return value
        if dtype == "boolean":
            if not isinstance(value, bool):
                raise bad()
            return value
        if dtype in ("integer", "bigint", "double", "currency", "percent"):
            return _check_number(meta, dtype, value, bad)
        if dtype in ("date", "datetime"):
            return _check_time(dtype, value, bad)
        if dtype in ("lookup", "ownerlookup", "userlookup"):
            return self._check_lookup(meta, dtype, value, bad)
        return value

    def _check_lookup(self, meta: dict[str, Any], dtype: str, value: Any, bad: _Bad) -> Any:
        """A lookup is `{"id": ...}` of an existing record (or user); answers Zoho's stored reference."""
        if not isinstance(value, dict) or not str(value.get("id", "")).isdigit():
            raise bad("jsonobject")
        ref = str(value["id"])
        if dtype != "lookup":
            user = next((u for u in self.users if u["id"] == ref), None)
            if user is None:
                raise bad("jsonobject", message="invalid data", id=ref)
            return self.user_ref(user)
        target_name = (meta.get("lookup") or {}).get("module", {}).get("api_name")
        if not target_name:
            return {"id": ref}  # What_Id: resolved against $se_module
        target = self.module(target_name)
        if target is None or ref not in target.records:
            raise bad("jsonobject", message="the id given seems to be invalid", id=ref)
        label = DUP_CHECK.get(target_name, "Name")
        return {"name": target.records[ref].get(label) or target.records[ref].get("Last_Name"), "id": ref}

    # -- reading --------------------------------------------------------------------------

    def scan(self, mod: ModuleStore, sort_by: str, descending: bool, after: tuple[int, int] | None,
             since: int | None) -> Iterator[tuple[int, int]]:
        """Index keys in order, strictly after `after`, modified strictly after `since`."""
        idx = mod.index(sort_by)
        by_mtime = sort_by == "Modified_Time"
        if not descending:
            start = bisect.bisect_right(idx, after) if after else 0
            if by_mtime and since is not None:
                start = max(start, bisect.bisect_right(idx, (since, 1 << 62)))
            for pos in range(start, len(idx)):
                key = idx[pos]
                if since is None or by_mtime or mod.records[str(key[1])]["_mtime"] > since:
                    yield key
        else:
            end = bisect.bisect_left(idx, after) if after else len(idx)
            for pos in range(end - 1, -1, -1):
                key = idx[pos]
                if by_mtime and since is not None and key[0] <= since:
                    return
                if since is None or mod.records[str(key[1])]["_mtime"] > since:
                    yield key


def _check_number(meta: dict[str, Any], dtype: str, value: Any, bad: _Bad) -> Any:
    """integer, bigint (kept as digits), double, currency and percent (as Decimal at the field's places)."""
    if dtype == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or len(str(abs(value))) > int(
                meta["length"]):
            raise bad()
        return value
    if dtype == "bigint":
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.isdigit() or len(value) > int(meta["length"]):
            raise bad()
        return value
    if dtype in ("double", "currency", "percent"):
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise bad("double" if dtype != "currency" else "double")
        places = int(meta.get("decimal_place") or 2)
        try:
            number = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise bad() from None
        if len(str(abs(int(number)))) > int(meta["length"]):
            raise bad()
        return number
    return value


def _check_time(dtype: str, value: Any, bad: _Bad) -> Any:
    """A date as `YYYY-MM-DD` text; a date-time with an offset, stored as epoch seconds."""
    if dtype == "date":
        try:
            if not (isinstance(value, str) and _DATE.match(value)):
                raise ValueError(value)
            date.fromisoformat(value)
        except (TypeError, ValueError):
            raise bad() from None
        return value
    if dtype == "datetime":
        try:
            if not (isinstance(value, str) and _DATETIME.match(value)):
                raise ValueError(value)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad() from None
        if parsed.tzinfo is None:
            raise bad()
        return int(parsed.timestamp())
    return value
