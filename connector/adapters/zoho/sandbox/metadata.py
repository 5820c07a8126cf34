"""Metadata endpoints of the sandbox: users, org-level module and field settings, custom field creation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connector.adapters.zoho.sandbox.params import ApiError, Result
from connector.adapters.zoho.sandbox.schema import field as make_field
from connector.adapters.zoho.sandbox.store import ModuleStore, Org
from connector.adapters.zoho.sandbox.versions import LATEST, ApiVersion


class MetadataHandlers:
    """`/users`, `/settings/modules` and `/settings/fields` over one `Org`."""

    org: Org

    def users(self, params: Mapping[str, str]) -> Result:
        """`GET /users?type=...`."""
        kind = params.get("type", "AllUsers")
        users = [self.org.current_user] if kind == "CurrentUser" else list(self.org.users)
        return 200, {"users": users, "info": {"per_page": 200, "count": len(users), "page": 1,
                                              "more_records": False}}

    def modules(self, rest: list[str], headers: Mapping[str, str], version: ApiVersion = LATEST) -> Result:
        """`GET /settings/modules[/{api_name}]`."""
        if headers.get("if-modified-since"):
            return 304, None
        if rest:
            mod = self.org.module(rest[0])
            if mod is None:
                raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid")
            return 200, {"modules": [self._module_meta(mod, version)]}
        return 200, {"modules": [self._module_meta(m, version) for m in self.org.modules.values()]}

    @staticmethod
    def _module_meta(mod: ModuleStore, version: ApiVersion) -> dict[str, Any]:
        if version.module_status:
            return mod.meta
        # Before v5 a module said `visible: true`; v5 replaced that key with `status`.
        meta = {k: v for k, v in mod.meta.items() if k != "status"}
        meta["visible"] = mod.meta.get("status") == "visible"
        return meta

    def fields(self, params: Mapping[str, str], version: ApiVersion = LATEST) -> Result:
        """`GET /settings/fields?module=`."""
        if not params.get("module"):
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "module"})
        mod = self.org.module(params["module"])
        if mod is None:
            raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                           {"param_name": "module"})
        if not version.field_id_meta:  # `id` became a listed field in v4
            return 200, {"fields": [f for f in mod.fields if f["api_name"] != "id"]}
        return 200, {"fields": mod.fields}

    def create_fields(self, params: Mapping[str, str], body: Any) -> Result:
        """`POST /settings/fields?module=`: up to 5 custom fields."""
        mod = self.org.module(params.get("module", ""))
        if mod is None:
            raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                           {"param_name": "module"})
        items = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "fields"})
        if len(items) > 5:
            raise ApiError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": 5, "by": "fields"})
        out = []
        for i, item in enumerate(items):
            label = str(item.get("field_label", "")).strip()
            api_name = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
            dtype = item.get("data_type")
            if not label or dtype not in ("text", "textarea", "email", "phone", "website", "picklist",
                                          "integer", "bigint", "double", "currency", "percent", "boolean",
                                          "date", "datetime"):
                out.append({"code": "INVALID_DATA", "details": {"json_path": f"$.fields[{i}]"},
                            "message": "invalid data", "status": "error"})
                continue
            if api_name in mod.field_map:
                out.append({
                    "code": "DUPLICATE_DATA",
                    "details": {"api_name": "field_label", "json_path": f"$.fields[{i}].field_label"},
                    "message": "duplicate data", "status": "error"
                })
                continue
            picks = [p.get("actual_value")
                     for p in item.get("pick_list_values") or []] if dtype == "picklist" else None
            meta = make_field(api_name, dtype, label=label, custom=True, picklist=picks,
                              length=item.get("length"), unique=bool(item.get("unique")),
                              field_id=self.org.new_id())
            mod.add_field(meta)
            out.append({"code": "SUCCESS", "details": {"id": meta["id"]}, "message": "field created",
                        "status": "success"})
        return 201 if all(o["status"] == "success" for o in out) else 400, {"fields": out}
