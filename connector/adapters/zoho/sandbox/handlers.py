"""CRM endpoints of the sandbox (v8 shapes, older versions where they differ): metadata, records, COQL, writes."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector.adapters.zoho.sandbox.query import QueryError, parse_coql, parse_criteria, value_of
from connector.adapters.zoho.sandbox.schema import field as make_field
from connector.adapters.zoho.sandbox.store import DUP_CHECK, NOT_UPSERTABLE, ModuleStore, Org, RecordFault
from connector.adapters.zoho.sandbox.versions import LATEST, ApiVersion

MAX_FIELDS = 50
MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2000
TOKEN_LIMIT = 100_000
TOKEN_TTL = 86400
WRITE_LIMIT = 100
TRIGGERS = {"workflow", "approval", "blueprint", "pathfinder", "orchestration"}
Result = tuple[int, Any]


class ApiError(Exception):
    """A whole-request error answered with Zoho's flat envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details or {}, "message": message, "status": "error"}


def _since(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("if-modified-since")
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "If-Modified-Since"}) from None
    if parsed.tzinfo is None:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "If-Modified-Since"})
    return int(parsed.timestamp())


def _order_key(rec: dict[str, Any], name: str) -> tuple[bool, Any]:
    # COQL `order by`: nulls last; ids as they are; integers as numbers; anything else as text.
    value = value_of(rec, name)
    if name == "id":
        return value is None, value or 0
    return value is None, value if isinstance(value, int) else str(value)


class RecordHandlers:
    """Routes `/crm/v8/...` paths to handlers over one `Org`."""

    def __init__(self, org: Org, search_lag: int = 2) -> None:
        self.org = org
        self.search_lag = search_lag
        self.automation_runs = 0

    def credits(self, method: str, path: str, params: Mapping[str, str], body: Any) -> int:
        """Credits a call costs, per Zoho's table."""
        parts = [p for p in path.split("/") if p]
        if method in ("POST", "PUT") and parts and parts[0] not in ("coql", "settings"):
            rows = body.get("data") if isinstance(body, dict) else None
            return max(1, math.ceil(len(rows) / 10)) if isinstance(rows, list) else 1
        if method == "DELETE":
            return max(1, math.ceil(len(params.get("ids", "x").split(",")) / 100))
        if len(parts) == 2 and parts[1] == "deleted":
            return 2
        if parts == ["coql"] and isinstance(body, dict):
            match = re.search(r"limit\s+(\d+)(?:\s*,\s*(\d+))?", str(body.get("select_query", "")), re.I)
            limit = int(match.group(2) or match.group(1)) if match else 200
            return 1 if limit <= 200 else 2 if limit <= 1000 else 3
        return 3 if "cvid" in params else 1

    def route(self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str], body: Any,
              version: ApiVersion = LATEST) -> Result:
        """Dispatch one call (path after `/crm/{version}`); raises `ApiError` for whole-request errors."""
        parts = [p for p in path.split("/") if p]
        if parts == ["users"] and method == "GET":
            return self.users(params)
        if parts == ["org"] and method == "GET":
            return 200, {"org": [self.org.org_info()]}
        if parts[:2] == ["settings", "modules"] and method == "GET":
            return self.modules(parts[2:], headers, version)
        if parts == ["settings", "fields"]:
            if method == "GET":
                return self.fields(params, version)
            if method == "POST":
                return self.create_fields(params, body)
        if parts == ["coql"] and method == "POST":
            return self.coql(body, version)
        if not parts or parts[0] in ("settings", "users", "coql", "org"):
            raise ApiError(404, "INVALID_URL_PATTERN",
                           "Please check if the URL trying to access is a correct one")
        mod = self.org.module(parts[0])
        if mod is None:
            raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                           {"resource_path_index": 0})
        rest = parts[1:]
        table: dict[tuple[str, str], Any] = {
            ("GET", ""): lambda: self.list_records(mod, params, headers, version),
            ("POST", ""): lambda: self.write(mod, body, "insert"),
            ("PUT", ""): lambda: self.write(mod, body, "update"),
            ("DELETE", ""): lambda: self.delete(mod, params.get("ids", "").split(",")),
            ("POST", "upsert"): lambda: self.write(mod, body, "upsert"),
            ("GET", "deleted"): lambda: self.deleted(mod, params, headers),
            ("GET", "search"): lambda: self.search(mod, params),
            ("GET", "actions/count"): lambda: (200, {"count": len(mod.records)}),
        }
        key = (method, "/".join(rest))
        if key in table:
            return table[key]()  # type: ignore[no-any-return]
        if len(rest) == 1 and rest[0].isdigit():
            if method == "GET":
                return self.get_one(mod, rest[0], params)
            if method == "PUT":
                rows = body.get("data") if isinstance(body, dict) else None
                if isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], dict):
                    rows[0]["id"] = rest[0]
                return self.write(mod, body, "update")
            if method == "DELETE":
                return self.delete(mod, [rest[0]])
        raise ApiError(404, "INVALID_URL_PATTERN",
                       "Please check if the URL trying to access is a correct one")

    # -- metadata -------------------------------------------------------------------------

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

    # -- reads ----------------------------------------------------------------------------

    def _field_list(self, mod: ModuleStore, raw: str | None, required: bool) -> list[str] | None:
        if not raw:
            if required:
                raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                               {"param_name": "fields"})
            return None
        names = [n.strip() for n in raw.split(",") if n.strip()]
        if len(names) > MAX_FIELDS:
            raise ApiError(400, "LIMIT_EXCEEDED", "limit exceeded",
                           {"limit": MAX_FIELDS, "param_name": "fields"})
        return names

    def list_records(self, mod: ModuleStore, params: Mapping[str, str], headers: Mapping[str, str],
                     version: ApiVersion = LATEST) -> Result:
        """`GET /{module}`: fields, paging by page or token, sort, If-Modified-Since."""
        if not version.page_token:  # v2 and v2.1 document no page_token parameter
            params = {k: v for k, v in params.items() if k != "page_token"}
        fields = self._field_list(mod, params.get("fields"), required=version.fields_required)
        per_page = self._int(params, "per_page", MAX_PER_PAGE)
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "per_page"})
        if "page" in params and "page_token" in params:
            raise ApiError(400, "AMBIGUITY_DURING_PROCESSING", "You cannot use both page and page_token",
                           {"ambiguity_due_to": [{"param_name": "page"}, {"param_name": "page_token"}]})
        sort_by = params.get("sort_by", "id")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            raise ApiError(
                400, "INVALID_DATA", "invalid data",
                {"param_name": "sort_by", "supported_values": ["id", "Created_Time", "Modified_Time"]})
        sort_order = params.get("sort_order", "desc")
        if sort_order not in ("asc", "desc"):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "sort_order"})
        since = _since(headers)
        binding = (tuple(sorted((k, v) for k, v in params.items() if k not in ("page", "page_token"))), since)
        now = self.org.now()
        after, served, page = None, 0, 1
        if "page_token" in params:
            state = self.org.page_tokens.get(params["page_token"])
            if state is None:
                raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "page_token"})
            if state["expires"] <= now:
                raise ApiError(400, "EXPIRED_VALUE", "Page token expired",
                               {"api_name": "page_token", "json_path": "$.query.page_token"})
            if state["binding"] != binding:
                raise ApiError(
                    400, "TOKEN_BOUND_DATA_MISMATCH", "The page_token given seems to be invalid or "
                    "input param is added, altered, or deleted", {"param_name": "page_token"})
            if state["served"] >= TOKEN_LIMIT:
                raise ApiError(400, "PAGINATION_LIMIT_EXCEEDED", "You can only get upto 100000 records using "
                               "page_token param", {"param_name": "page_token"})
            after, served = state["after"], state["served"]
        else:
            page = self._int(params, "page", 1)
            if page < 1:
                raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "page"})
            cap = version.discrete_limit
            if cap is not None and (page - 1) * per_page >= cap:
                raise ApiError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                               f"You can only get the first {cap} records "
                               "without using page_token param", {"limit": cap})
        wanted = set(params["ids"].split(",")) if params.get("ids") else None
        skip = (page - 1) * per_page if "page_token" not in params else 0
        keys: list[tuple[int, int]] = []
        want = min(per_page, TOKEN_LIMIT - served) if "page_token" in params else per_page
        for key in self.org.scan(mod, sort_by, sort_order == "desc", after, since):
            if wanted is not None and str(key[1]) not in wanted:
                continue
            if skip:
                skip -= 1
                continue
            keys.append(key)
            if len(keys) > want:
                break
        more = len(keys) > want
        keys = keys[:want]
        if not keys:
            return (304 if since is not None else 204), None
        data = [self.org.render(mod, mod.records[str(k[1])], fields) for k in keys]
        if not version.page_token:
            return 200, {"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                                "more_records": more}}
        token = expiry = None
        if more:
            token = secrets.token_hex(24)
            expires = now + TOKEN_TTL
            self.org.page_tokens[token] = {
                "after": keys[-1], "binding": binding, "expires": expires,
                "served": (served if "page_token" in params else (page - 1) * per_page) + len(keys)
            }
            expiry = self.org.render_time(expires)
        return 200, {"data": data, "info": {
            "call": False, "email": False, "per_page": per_page, "count": len(data), "page": page,
            "sort_by": sort_by, "sort_order": sort_order, "more_records": more, "next_page_token": token,
            "previous_page_token": params.get("page_token"), "page_token_expiry": expiry}}

    @staticmethod
    def _int(params: Mapping[str, str], name: str, default: int) -> int:
        try:
            return int(params.get(name, default))
        except ValueError:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": name}) from None

    def get_one(self, mod: ModuleStore, rec_id: str, params: Mapping[str, str]) -> Result:
        """`GET /{module}/{id}` (204 when absent)."""
        rec = mod.records.get(rec_id)
        if rec is None:
            return 204, None
        fields = self._field_list(mod, params.get("fields"), required=False)
        return 200, {"data": [{**self.org.render(mod, rec, fields), "$has_more": {}}]}

    def deleted(self, mod: ModuleStore, params: Mapping[str, str], headers: Mapping[str, str]) -> Result:
        """`GET /{module}/deleted`."""
        kind = params.get("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            raise ApiError(400, "PATTERN_NOT_MATCHED", "Please check whether the input values are correct",
                           {"param_name": "type"})
        per_page = self._int(params, "per_page", MAX_PER_PAGE)
        page = self._int(params, "page", 1)
        since = _since(headers)
        rows = [d for d in mod.deleted if (kind == "all" or d["type"] == kind)
                and (since is None or d["_deleted"] > since)]
        chunk = rows[(page - 1) * per_page: page * per_page]
        if not chunk:
            return 204, None
        data = [{k: v for k, v in d.items() if not k.startswith("_")} | {"deleted_time": self.org.render_time(
            d["_deleted"])} for d in chunk]
        return 200, {"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                            "more_records": page * per_page < len(rows)}}

    def search(self, mod: ModuleStore, params: Mapping[str, str]) -> Result:
        """`GET /{module}/search` with criteria/email/phone/word."""
        per_page = self._int(params, "per_page", MAX_PER_PAGE)
        page = self._int(params, "page", 1)
        if page * per_page > DISCRETE_LIMIT:
            raise ApiError(400, "LIMIT_REACHED", "Maximum response iteration limit reached",
                           {"limit": DISCRETE_LIMIT})
        if params.get("criteria"):
            try:
                pred = parse_criteria(params["criteria"])
            except QueryError as exc:
                raise ApiError(400, exc.code, str(exc), exc.details) from None
        elif params.get("email") or params.get("phone") or params.get("word"):
            needle = (params.get("email") or params.get("phone") or params.get("word") or "").lower()
            pred = lambda r: any(needle in str(v).lower() for v in r.values() if isinstance(v, str))  # noqa: E731
        else:
            raise ApiError(400, "EXPECTED_PARAM_MISSING", "mandatory param missing",
                           {"param_name": ["criteria", "email", "phone", "word"]})
        visible_before = self.org.now() - self.search_lag  # the search index lags behind writes
        hits = [r for r in mod.records.values() if r["_mtime"] <= visible_before and pred(r)]
        chunk = hits[(page - 1) * per_page: page * per_page]
        if not chunk:
            return 204, None
        fields = self._field_list(mod, params.get("fields"), required=False)
        return 200, {
            "data": [self.org.render(mod, r, fields) for r in chunk], "info": {
                "per_page": per_page, "count": len(chunk), "page": page, "more_records": page * per_page
                < len(hits)
            }
        }

    def coql(self, body: Any, version: ApiVersion = LATEST) -> Result:
        """`POST /coql` (LIMIT caps by version)."""
        if not isinstance(body, dict) or not body.get("select_query"):
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "select_query"})
        try:
            query = parse_coql(str(body["select_query"]), max_limit=version.coql_limit,
                               max_total=version.coql_total)
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc), exc.details) from None
        mod = self.org.module(query.module)
        if mod is None:
            raise ApiError(400, "INVALID_QUERY", "invalid query formed",
                           {"clause": "from", "near": query.module})
        for name in query.columns + [n for n, _ in query.order]:
            if name.split(".")[0] not in mod.field_map and name != "id":
                raise ApiError(400, "INVALID_QUERY", "invalid column name",
                               {"column_name": name, "clause": "select"})
        rows = [r for r in mod.records.values() if query.where(r)]
        for name, desc in reversed(query.order or [("id", False)]):
            rows.sort(key=lambda r: _order_key(r, name), reverse=desc)
        page = rows[query.offset: query.offset + query.limit]
        if not page:
            return 204, None
        data = [self.org.render(mod, r, [c.split(".")[0] for c in query.columns]) for r in page]
        for item in data:
            for key in ("$currency_symbol", "$approval_state"):
                item.pop(key, None)
        return 200, {"data": data, "info": {"count": len(data),
                                            "more_records": query.offset + query.limit < len(rows)}}

    # -- writes ---------------------------------------------------------------------------

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
