"""The sandbox tenant's data: records per object, id generation, queries and mutations.

Records are kept as the server would return them (currency as 2-decimal strings, times as epoch
ms, `owner` as a list), with nulls omitted. Ids are 24-hex strings that grow with creation time,
so keyset paging on `_id` behaves as on the real service.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.adapters.fxiaoke.sandbox.schema import (
    DECIMAL_TYPES,
    FIELD_CACHE,
    LIST_TYPES,
    NUMERIC_TYPES,
    OBJECTS,
    READ_ONLY_TYPES,
    SYSTEM_FIELDS,
)

PARAM_ERROR = 32000
OPERATORS = frozenset({
    "EQ", "N", "GT", "GTE", "LT", "LTE", "LIKE", "NLIKE", "IS", "ISN", "IN", "NIN", "BETWEEN", "NBETWEEN",
    "STARTWITH", "ENDWITH", "CONTAINS", "HASANYOF", "NHASANYOF"
})


class SandboxError(Exception):
    """An error the sandbox answers as an envelope (HTTP 200, non-zero errorCode)."""

    def __init__(self, code: int, message: str, description: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.description = description or message


def param_error(message: str) -> SandboxError:
    """The generic parameter error (32000) the sandbox uses for validation failures."""
    return SandboxError(PARAM_ERROR, f"参数错误: {message}", message)


class Table:
    """Records of one object, with `_id` kept sorted for keyset scans."""

    def __init__(self, api_name: str) -> None:
        self.api_name = api_name
        self.fields = FIELD_CACHE[api_name]
        self.rows: dict[str, dict[str, Any]] = {}
        self.ids: list[str] = []

    def put(self, record: dict[str, Any]) -> None:
        """Insert a new record (its `_id` must be new)."""
        rid = record["_id"]
        if rid not in self.rows:
            if not self.ids or rid > self.ids[-1]:
                self.ids.append(rid)
            else:
                bisect.insort(self.ids, rid)
        self.rows[rid] = record

    def remove(self, rid: str) -> None:
        """Hard-delete a record."""
        if self.rows.pop(rid, None) is not None:
            self.ids.pop(bisect.bisect_left(self.ids, rid))


def decimal_string(value: Any, places: int, field: str) -> str:
    """Validate a number/currency write and return it as the server's fixed-decimal string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise param_error(f"字段 {field} 数值格式错误")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise param_error(f"字段 {field} 数值格式错误: {value!r}") from None
    if not amount.is_finite():
        raise param_error(f"字段 {field} 数值格式错误: {value!r}")
    quantum = Decimal(1).scaleb(-places)
    if amount.quantize(quantum) != amount:
        raise param_error(f"字段 {field} 小数位数不能超过{places}位")
    return str(amount.quantize(quantum))


def _sort_key(value: Any, numeric: bool) -> Any:
    if numeric:
        try:
            return Decimal(str(value))
        except (InvalidOperation, ValueError):
            return Decimal(0)
    return str(value)


class Store:
    """All objects of one tenant, guarded by one lock."""

    def __init__(self, clock_ms: Callable[[], int], machine: str = "a1b2c3d4e5") -> None:
        self.clock_ms = clock_ms
        self.tables = {name: Table(name) for name in OBJECTS}
        self.lock = threading.RLock()
        self._machine = machine
        self._last_secs = 0
        self._counter = 0
        self._numbers: dict[str, int] = {}

    def table(self, api_name: object) -> Table:
        """The table for an object (any value a request carried), or the vendor's 'apiName illegal' error."""
        table = self.tables.get(api_name) if isinstance(api_name, str) else None
        if table is None:
            raise SandboxError(10006, "the parameter apiName is missing or illegal", "缺少参数或参数不合法")
        return table

    def new_id(self, at_ms: int) -> str:
        """A 24-hex id that sorts after every id made before it."""
        self._last_secs = max(self._last_secs, at_ms // 1000)
        self._counter = (self._counter + 1) % 0x1000000
        return f"{self._last_secs:08x}{self._machine}{self._counter:06x}"

    def _auto_number(self, api_name: str, at_ms: int) -> str:
        self._numbers[api_name] = self._numbers.get(api_name, 0) + 1
        return f"{api_name[:2].upper()}{self._numbers[api_name]:08d}"

    # -- writes ----------------------------------------------------------------------------------

    def coerce(self, table: Table, data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """Validate client-supplied fields and convert them to stored form."""
        out: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("dataObjectApiName", "_id"):
                continue
            meta = table.fields.get(name)
            if meta is None or name.endswith(("__r", "__l", "__o", "__v")):
                raise param_error(f"对象 {table.api_name} 没有字段 {name}")
            if name in SYSTEM_FIELDS or meta["type"] in READ_ONLY_TYPES:
                raise param_error(f"字段 {name} 是只读字段")
            if name == "owner" and not creating:
                raise param_error("负责人(owner)不能通过编辑修改, 请使用更换负责人接口")
            if value is None:
                out[name] = None
                continue
            out[name] = self._coerce_value(name, meta, value, data.get("record_type"))
        return out

    def _coerce_value(self, name: str, meta: dict[str, Any], value: Any, record_type: Any) -> Any:
        kind = meta["type"]
        if kind in DECIMAL_TYPES:
            return decimal_string(value, int(meta.get("decimal_places", 2)), name)
        if kind in ("date", "date_time", "time"):
            if isinstance(value, bool) or not isinstance(value,
                                                         (int, str)) or not str(value).lstrip("-").isdigit():
                raise param_error(f"字段 {name} 需要毫秒时间戳")
            return int(value)
        if kind in ("select_one", "record_type"):
            codes = {o["value"] for o in meta.get("options", [])}
            if str(value) not in codes:
                raise param_error(f"字段 {name} 选项值 {value!r} 不存在")
            return str(value)
        if kind in LIST_TYPES:
            if not isinstance(value, list):
                raise param_error(f"字段 {name} 需要数组")
            if kind == "select_many" and "options" in meta:
                codes = {o["value"] for o in meta["options"]}
                unknown = [v for v in value if str(v) not in codes]
                if unknown:
                    raise param_error(f"字段 {name} 选项值 {unknown[0]!r} 不存在")
            return value
        if kind == "true_or_false":
            if not isinstance(value, bool):
                raise param_error(f"字段 {name} 需要布尔值")
            return value
        if not isinstance(value, str):
            raise param_error(f"字段 {name} 需要字符串")
        limit = meta.get("max_length")
        if limit is not None and len(value) > limit:
            raise param_error(f"字段 {name} 长度不能超过{limit}个字符 (现为{len(value)})")
        return value

    def create(self, api_name: str, data: Mapping[str, Any], user: str, *, at_ms: int | None = None,
               raw: bool = False) -> dict[str, Any]:
        """Create a record; `raw=True` (seeding) stores `data` as given, skipping validation."""
        table = self.table(api_name)
        now = self.clock_ms() if at_ms is None else at_ms
        with self.lock:
            values = dict(data) if raw else self.coerce(table, data, creating=True)
            if not raw:
                for name, meta in table.fields.items():
                    if meta.get("is_required") and name not in SYSTEM_FIELDS and values.get(name) in (None,
                                                                                                      "", []):
                        if meta["type"] not in READ_ONLY_TYPES:
                            raise param_error(f"{meta['label']}({name}) 为必填项")
            record: dict[str, Any] = {
                "_id": self.new_id(now), "object_describe_api_name": api_name,
                "created_by": [user], "create_time": now, "last_modified_by": [user],
                "last_modified_time": now, "life_status": "normal", "lock_status": "0",
                "record_type": "default__c", "is_deleted": False, "version": "1",
            }
            for name, meta in table.fields.items():
                if meta["type"] == "auto_number" and name not in values:
                    record[name] = self._auto_number(api_name, now)
            record.update({k: v for k, v in values.items() if v is not None})
            table.put(record)
            return record

    def update(self, api_name: str, rid: str, data: Mapping[str, Any], user: str,
               skip_status_check: bool = False) -> dict[str, Any]:
        """Partial update: only the given fields change; version and modified time move."""
        table = self.table(api_name)
        with self.lock:
            record = self.get(api_name, rid)
            values = self.coerce(table, data, creating=False)
            if record.get("life_status") == "invalid":
                raise param_error("已作废的数据不能编辑")
            if record.get("lock_status") == "1" and not skip_status_check:
                raise param_error("数据已锁定, 不能编辑")
            for name, value in values.items():
                meta = table.fields[name]
                if value in (None, "", []) and meta.get("is_required"):
                    raise param_error(f"{meta['label']}({name}) 为必填项")
            fresh = dict(record)
            for name, value in values.items():
                if value is None:
                    fresh.pop(name, None)
                else:
                    fresh[name] = value
            self._touch(fresh, user)
            table.rows[rid] = fresh
            return fresh

    def _touch(self, record: dict[str, Any], user: str, at_ms: int | None = None) -> None:
        record["version"] = str(int(record.get("version", "0")) + 1)
        now = self.clock_ms() if at_ms is None else at_ms
        record["last_modified_time"] = max(now, int(record["last_modified_time"]))
        record["last_modified_by"] = [user]

    def get(self, api_name: str, rid: Any) -> dict[str, Any]:
        """A record by id, or the 'not found' parameter error."""
        table = self.table(api_name)
        record = table.rows.get(rid) if isinstance(rid, str) else None
        if record is None:
            raise param_error(f"数据不存在或已被删除: {rid}")
        return record

    def set_life_status(self, api_name: str, rid: str, status: str, user: str,
                        at_ms: int | None = None) -> None:
        """Invalidate or recover a record."""
        with self.lock:
            record = dict(self.get(api_name, rid))
            if status == "invalid":
                if record.get("life_status") == "invalid":
                    return
                record["life_status_before_invalid"] = record.get("life_status", "normal")
            else:
                if record.get("life_status") != "invalid":
                    return
                status = record.pop("life_status_before_invalid", "normal")
            record["life_status"] = status
            self._touch(record, user, at_ms)
            self.tables[api_name].rows[rid] = record

    def delete(self, api_name: str, rid: str) -> None:
        """Hard delete, allowed only after invalidation."""
        with self.lock:
            if self.get(api_name, rid).get("life_status") != "invalid":
                raise param_error(f"数据 {rid} 需先作废才能删除")
            self.tables[api_name].remove(rid)

    def change_owner(self, api_name: str, rid: str, owner: list[str], user: str) -> None:
        """Replace a record's owner list."""
        with self.lock:
            record = dict(self.get(api_name, rid))
            record["owner"] = owner
            self._touch(record, user)
            self.tables[api_name].rows[rid] = record

    # -- queries ---------------------------------------------------------------------------------

    def _matcher(self, table: Table, flt: Mapping[str, Any]) -> Callable[[dict[str, Any]], bool]:
        name = flt.get("field_name")
        op = str(flt.get("operator", "EQ")).upper()
        values = flt.get("field_values")
        if not isinstance(name, str) or name not in table.fields:
            raise param_error(f"过滤字段不存在: {name!r}")
        if op not in OPERATORS:
            raise param_error(f"不支持的操作符: {op}")
        if not isinstance(values, list):
            raise param_error("field_values 必须是数组")
        numeric = table.fields[name]["type"] in NUMERIC_TYPES or name == "version"
        wanted = [_sort_key(v, numeric) for v in values]

        def test(record: dict[str, Any]) -> bool:
            """Whether one record passes this filter."""
            raw = record.get(name)
            if op == "IS":
                return raw in (None, "", [])
            if op == "ISN":
                return raw not in (None, "", [])
            items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
            have = [_sort_key(v, numeric) for v in items]
            if op in ("N", "NIN", "NLIKE", "NHASANYOF", "NBETWEEN"):
                return not _positive(op[1:] if op != "N" else "EQ", have, wanted)
            return _positive(op, have, wanted)

        return test

    def query(self, api_name: str, info: Mapping[str, Any], *, count: bool = False
              ) -> tuple[list[dict[str, Any]], int]:
        """Run a search_query_info; returns (page, total-or-0)."""
        table = self.table(api_name)
        limit, offset = info.get("limit", 20), info.get("offset", 0)
        if isinstance(limit, str) and limit.isdigit():
            limit = int(limit)
        if isinstance(offset, str) and offset.isdigit():
            offset = int(offset)
        if not isinstance(limit, int) or not isinstance(offset, int) or limit <= 0 or offset < 0:
            raise param_error("offset/limit 参数错误")
        if limit > 100:
            raise param_error("limit 不能超过100")
        if offset > 10_000:
            raise SandboxError(10013, "offset out of range 10000", "offset 不能超过10000")
        if offset % limit:
            raise param_error("offset 必须是 limit 的整数倍")
        filters = info.get("filters") or []
        orders = info.get("orders") or []
        if not isinstance(filters, list) or not isinstance(orders, list):
            raise param_error("filters/orders 必须是数组")
        tests = [self._matcher(table, f) for f in filters]
        with self.lock:
            by_id = all(o.get("fieldName") == "_id" for o in orders)
            if by_id:
                page, total = self._scan_by_id(table, filters, tests, orders, offset, limit, count)
            else:
                rows = [r for r in table.rows.values() if all(t(r) for t in tests)]
                for order in reversed(orders):
                    fname = order.get("fieldName")
                    numeric = table.fields.get(fname, {}).get("type") in NUMERIC_TYPES
                    rows.sort(key=lambda r: (r.get(fname) is None, _sort_key(r.get(fname, ""), numeric)),
                              reverse=not order.get("isAsc", True))
                total = len(rows) if count else 0
                page = rows[offset:offset + limit]
        return page, total

    def _scan_by_id(self, table: Table, filters: list[Any], tests: list[Callable[[dict[str, Any]],
                                                                                 bool]], orders: list[Any],
                    offset: int, limit: int, count: bool) -> tuple[list[dict[str, Any]], int]:
        ascending = orders[0].get("isAsc", True) if orders else True
        ids: Iterator[str]
        start = 0
        if ascending:
            for flt in filters:  # jump straight to the keyset position instead of scanning from the start
                if flt.get("field_name") == "_id" and str(flt.get("operator")).upper() in ("GT", "GTE") \
                        and flt.get("field_values"):
                    pivot = str(flt["field_values"][0])
                    pos = (bisect.bisect_right
                           if str(flt["operator"]).upper() == "GT" else bisect.bisect_left)(table.ids, pivot)
                    start = max(start, pos)
            ids = iter(table.ids[start:])
        else:
            ids = reversed(table.ids)
        page: list[dict[str, Any]] = []
        matched = 0
        for rid in ids:
            record = table.rows[rid]
            if all(t(record) for t in tests):
                if offset <= matched < offset + limit:
                    page.append(record)
                matched += 1
                if matched >= offset + limit and not count:
                    break
        return page, (matched if count else 0)


def _positive(op: str, have: list[Any], wanted: list[Any]) -> bool:
    if op == "EQ":
        return bool(wanted) and any(h == wanted[0] for h in have)
    if op in ("IN", "HASANYOF", "CONTAINS"):
        return any(h in wanted for h in have)
    if op in ("GT", "GTE", "LT", "LTE"):
        if not wanted or not have:
            return False
        w, h = wanted[0], have[0]
        try:
            return bool({"GT": h > w, "GTE": h >= w, "LT": h < w, "LTE": h <= w}[op])
        except TypeError:
            return False
    if op == "BETWEEN":
        return len(wanted) == 2 and bool(have) and wanted[0] <= have[0] <= wanted[1]
    text = [str(h) for h in have]
    needle = str(wanted[0]) if wanted else ""
    if op == "LIKE":
        return any(needle in t for t in text)
    if op == "STARTWITH":
        return any(t.startswith(needle) for t in text)
    if op == "ENDWITH":
        return any(t.endswith(needle) for t in text)
    raise param_error(f"不支持的操作符: {op}")
