"""CRM endpoints of the sandbox (v8 shapes, older versions where they differ): routing, record reads, COQL.

Metadata handlers live in `metadata`, writes in `writes`, the shared error and parameter readers in `params`.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from typing import Any

from connector.adapters.zoho.sandbox.metadata import MetadataHandlers
from connector.adapters.zoho.sandbox.params import ApiError, Result, field_list, int_param, since_header
from connector.adapters.zoho.sandbox.query import QueryError, parse_coql, parse_criteria, value_of
from connector.adapters.zoho.sandbox.store import ModuleStore, Org
from connector.adapters.zoho.sandbox.versions import LATEST, ApiVersion
from connector.adapters.zoho.sandbox.watch import WatchHandlers
from connector.adapters.zoho.sandbox.writes import WriteHandlers

__all__ = ["ApiError", "RecordHandlers"]

MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2000
TOKEN_LIMIT = 100_000
TOKEN_TTL = 86400


def _order_key(rec: dict[str, Any], name: str) -> tuple[bool, Any]:
    # COQL `order by`: nulls last; ids as they are; integers as numbers; anything else as text.
    value = value_of(rec, name)
    if name == "id":
        return value is None, value or 0
    return value is None, value if isinstance(value, int) else str(value)


class RecordHandlers(MetadataHandlers, WriteHandlers):
    """Routes `/crm/v8/...` paths to handlers over one `Org`."""

    def __init__(self, org: Org, search_lag: int = 2) -> None:
        self.org = org
        self.search_lag = search_lag
        self.automation_runs = 0
        self.watch: WatchHandlers | None = None  # the Notifications API, when the app set one up

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
        if parts == ["actions", "watch"] and self.watch is not None:
            return self.watch.route(method, params, body)
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

    # -- reads ----------------------------------------------------------------------------

    def list_records(self, mod: ModuleStore, params: Mapping[str, str], headers: Mapping[str, str],
                     version: ApiVersion = LATEST) -> Result:
        """`GET /{module}`: fields, paging by page or token, sort, If-Modified-Since."""
        if not version.page_token:  # v2 and v2.1 document no page_token parameter
            params = {k: v for k, v in params.items() if k != "page_token"}
        fields = field_list(params.get("fields"), required=version.fields_required)
        per_page = int_param(params, "per_page", MAX_PER_PAGE)
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
        since = since_header(headers)
        binding = (tuple(sorted((k, v) for k, v in params.items() if k not in ("page", "page_token"))), since)
        now = self.org.now()
        after, served, page = None, 0, 1
        if "page_token" in params:
            state = self._token_state(params["page_token"], binding, now)
            after, served = state["after"], state["served"]
        else:
            page = int_param(params, "page", 1)
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

    def _token_state(self, token: str, binding: Any, now: int) -> dict[str, Any]:
        """Where a `page_token` left off; Zoho's error when it is unknown, expired, rebound or used up."""
        state = self.org.page_tokens.get(token)
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
        return state

    def get_one(self, mod: ModuleStore, rec_id: str, params: Mapping[str, str]) -> Result:
        """`GET /{module}/{id}` (204 when absent)."""
        rec = mod.records.get(rec_id)
        if rec is None:
            return 204, None
        fields = field_list(params.get("fields"), required=False)
        return 200, {"data": [{**self.org.render(mod, rec, fields), "$has_more": {}}]}

    def deleted(self, mod: ModuleStore, params: Mapping[str, str], headers: Mapping[str, str]) -> Result:
        """`GET /{module}/deleted`."""
        kind = params.get("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            raise ApiError(400, "PATTERN_NOT_MATCHED", "Please check whether the input values are correct",
                           {"param_name": "type"})
        per_page = int_param(params, "per_page", MAX_PER_PAGE)
        page = int_param(params, "page", 1)
        since = since_header(headers)
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
        per_page = int_param(params, "per_page", MAX_PER_PAGE)
        page = int_param(params, "page", 1)
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
        fields = field_list(params.get("fields"), required=False)
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
