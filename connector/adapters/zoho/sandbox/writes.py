"""Write endpoints of the sandbox: insert, update, upsert (with duplicate matching) and delete."""

from __future__ import annotations

from typing import Any

from connector.adapters.zoho.sandbox.params import ApiError, Result
from connector.adapters.zoho.sandbox.store import DUP_CHECK, NOT_UPSERTABLE, ModuleStore, Org, RecordFault

WRITE_LIMIT = 100
TRIGGERS = {"workflow", "approval", "blueprint", "pathfinder", "orchestration"}


class WriteHandlers:
    """Record writes over one `Org`, with per-record outcomes; counts the automation runs they trigger."""

    org: Org
    automation_runs: int

    def write(self, mod: ModuleStore, body: Any, action: str) -> Result:
        """Insert, update or upsert up to 100 records with per-record outcomes."""
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "data"})
        if len(rows) > WRITE_LIMIT:
            raise ApiError(400, "LIMIT_EXCEEDED", "limit exceeded", {"by": "limit", "limit": WRITE_LIMIT})
        if action == "upsert" and mod.meta["api_name"] in NOT_UPSERTABLE:
            raise ApiError(400, "NOT_SUPPORTED", "the module is not supported for upsert",
                           {"resource_path_index": 0})
        trigger = body.get("trigger")
        if trigger is not None and (not isinstance(trigger, list) or not set(trigger) <= TRIGGERS):
            raise ApiError(400, "INVALID_DATA", "invalid data",
                           {"api_name": "trigger", "json_path": "$.trigger"})
        if trigger is None or "workflow" in trigger:
            self.automation_runs += len(rows)  # omitted trigger runs every automation
        dup_fields = body.get("duplicate_check_fields") or []
        out = []
        for i, row in enumerate(rows):
            try:
                out.append(self._write_one(mod, row, i, action, dup_fields))
            except RecordFault as fault:
                out.append(fault.item)
        ok = sum(1 for o in out if o["status"] == "success")
        status = (201 if action == "insert" else 200) if ok == len(out) else 207 if ok else 400
        return status, {"data": out}

    def _write_one(self, mod: ModuleStore, row: Any, i: int, action: str,
                   dup_fields: list[str]) -> dict[str, Any]:
        existing = None
        matched = None
        if action == "update":
            rec_id = str(row.get("id", "")) if isinstance(row, dict) else ""
            if not rec_id:
                raise RecordFault("MANDATORY_NOT_FOUND", "required field not found",
                                  {"api_name": "id", "json_path": f"$.data[{i}].id"})
            existing = mod.records.get(rec_id)
            if existing is None:
                raise RecordFault("INVALID_DATA", "the id given seems to be invalid",
                                  {"api_name": "id", "id": rec_id, "json_path": f"$.data[{i}].id"})
        elif action == "upsert" and isinstance(row, dict):
            existing, matched = self._match(mod, row, dup_fields)
        values = self.org.validate(mod, row, i, existing=existing)
        owner = values.pop("Owner", None)
        if existing is not None:
            if owner:
                values["Owner"] = owner
            rec = self.org.update(mod, existing["id"], values)
            result = self.org.write_result(rec, "record updated")
            if action == "upsert":
                result.update({"action": "update", "duplicate_field": matched})
            return result
        user = next((u for u in self.org.users if owner and u["id"] == owner["id"]), None)
        rec = self.org.insert(mod, values, owner=user)
        result = self.org.write_result(rec, "record added")
        if action == "upsert":
            result.update({"action": "insert", "duplicate_field": None})
        return result

    def _match(self, mod: ModuleStore, row: dict[str, Any], dup_fields: list[str]) -> tuple[Any, str | None]:
        system = DUP_CHECK.get(mod.meta["api_name"]) or ("Name" if "Name" in mod.field_map else None)
        unique = [f["api_name"] for f in mod.fields if f.get("unique")]
        order = list(dup_fields) + [u for u in unique if u not in dup_fields] if dup_fields else \
            ([system] if system else []) + unique
        for name in order:
            value = row.get(name)
            index = mod.lookup_index.get(name)
            if value in (None, "") or index is None:
                continue
            rec_id = index.get(str(value).lower())
            if rec_id:
                return mod.records[rec_id], name
        return None, None

    def delete(self, mod: ModuleStore, ids: list[str]) -> Result:
        """`DELETE /{module}?ids=` or `/{module}/{id}`."""
        ids = [i for i in ids if i]
        if not ids:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "ids"})
        if len(ids) > WRITE_LIMIT:
            raise ApiError(400, "LIMIT_EXCEEDED", "limit exceeded", {"by": "ids", "limit": WRITE_LIMIT})
        out = []
        for rec_id in ids:
            if rec_id in mod.records:
                self.org.delete(mod, rec_id)
                out.append({"code": "SUCCESS", "details": {"id": rec_id}, "message": "record deleted",
                            "status": "success"})
            else:
                out.append({
                    "code": "INVALID_DATA", "details": {"id": rec_id}, "message": "the id given seems to be "
                    "invalid", "status": "error"
                })
        ok = sum(1 for o in out if o["status"] == "success")
        return (200 if ok == len(out) else 207 if ok else 400), {"data": out}
