"""The sandbox's request handler: Fxiaoke Open API paths, envelopes, auth, limits and faults.

`SandboxApp.handle` takes a path, headers and raw body and returns what the HTTP layer should
send. It is used both by the loopback server and by the in-process transport adapter.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from connector.adapters.fxiaoke.sandbox import directory, schema
from connector.adapters.fxiaoke.sandbox.limits import DailyQuota, PathLimiter, SandboxClock, TokenRegistry
from connector.adapters.fxiaoke.sandbox.seed import Anomalies, employees, fake_hex, seed_tenant
from connector.adapters.fxiaoke.sandbox.store import SandboxError, Store, param_error

log = logging.getLogger("connector.fxiaoke.sandbox")

TOKEN_PATHS = ("/cgi/corpAccessToken/get/V2", "/oauth2.0/token")
NO_CREDENTIALS = SandboxError(20017, "corpAccessToken为必填项，不能为空", "corpAccessToken为必填项，不能为空")
BAD_TOKEN = SandboxError(20016, "the cropId,cropAccessToken or authorization is error",
                         "corpAccessToken不存在或者已经过期")
FIND_PATHS = ("/cgi/crm/custom/v2/data/findSimple", "/cgi/crm/custom/v2/data/findOne")
BAD_TRACE_ID = SandboxError(10006, "the parameter thirdTraceId is missing or illegal", "缺少参数或参数不合法")
THROTTLE_MESSAGES = {30004: "秒频次超限", 14001: "接口调用超过限制"}
FAULTS = ("system_busy", "http_502", "throttle", "disconnect")


def wants_total(data: Mapping[str, Any]) -> bool:
    """Whether a query asked for `total`: yes unless `find_explicit_total_num` is false (the documented
    default is true; the custom-object page types it as a string, so "false" counts as false too)."""
    flag = data.get("find_explicit_total_num", True)
    return not (flag is False or (isinstance(flag, str) and flag.strip().lower() == "false"))


@dataclass
class SandboxConfig:
    """Knobs of one sandbox tenant (mirrors the `sandbox serve` options)."""

    seed: int = 0
    latency_ms: int = 0
    fail_rate: float = 0.0
    token_ttl: int = 7200
    daily_quota: int | None = None
    rate_limit: int | None = 100
    rate_window: float = 20.0
    throttle_code: int = 30004
    faults: tuple[str, ...] = FAULTS
    clock_offset: float = 0.0  # seconds the tenant's clock runs ahead of (negative: behind) the machine's
    # The current docs ask for a new UUIDv4 `thirdTraceId` on every call; older SDKs never send one and a
    # probe without it still reached the auth check, so it is refused only when asked for (docs/fxiaoke.md).
    require_trace_id: bool = False


@dataclass
class Reply:
    """What to send: an HTTP status and JSON body, or drop the connection."""

    status: int = 200
    body: dict[str, Any] | None = None
    drop: bool = False


@dataclass
class Credentials:
    """Sandbox-only credentials the tenant accepts (generated test values)."""

    app_id: str
    app_secret: str
    permanent_code: str
    corp_id: str
    ea: str
    open_user_id: str

    def public(self, base_url: str) -> dict[str, str]:
        """The JSON line `serve` prints."""
        return {"base_url": base_url, "app_id": self.app_id, "app_secret": self.app_secret,
                "permanent_code": self.permanent_code, "open_user_id": self.open_user_id,
                "corp_id": self.corp_id}


@dataclass
class Counters:
    """What the sandbox saw, for tests and the benchmark."""

    calls: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    throttled: int = 0


class SandboxApp:
    """One emulated Fxiaoke tenant."""

    def __init__(self, config: SandboxConfig | None = None, clock: SandboxClock | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config or SandboxConfig()
        if clock is None:  # the tenant's clock: record times, the Date header, token lifetimes
            clock = SandboxClock()
            clock.advance(self.config.clock_offset)
        self.clock = clock
        self._sleep = sleep
        seed = self.config.seed
        self.staff = employees(seed)
        self.credentials = Credentials(app_id=f"FSAID_{fake_hex(f'app-{seed}', 7, upper=False)}",
                                       app_secret=fake_hex(f"secret-{seed}", upper=False),
                                       permanent_code=fake_hex(f"permanent-{seed}"),
                                       corp_id=f"FSCID_{fake_hex(f'corp-{seed}')}", ea=f"sandbox{seed}",
                                       open_user_id=self.staff[0].open_user_id)
        self.store = Store(self.clock.now_ms, machine=fake_hex(f"machine-{seed}", 10, upper=False))
        self.anomalies: Anomalies = seed_tenant(self.store, seed) if seed else Anomalies()
        self.tokens = TokenRegistry(self.clock, self.config.token_ttl)
        self.limiter = PathLimiter(self.clock, self.config.rate_limit, self.config.rate_window)
        self.quota = DailyQuota(self.clock, self.config.daily_quota)
        self.messages: list[dict[str, Any]] = []
        self.counters = Counters()
        self._rng = random.Random(seed * 7919 + 1)
        self._rng_lock = threading.Lock()
        self._faults_forced: list[str] = []
        self._trace_ids: set[str] = set()

    def http_date(self) -> str:
        """The tenant's clock as an HTTP `Date` header (what every answer carries)."""
        return formatdate(self.clock.now(), usegmt=True)

    # -- test hooks ------------------------------------------------------------------------------

    def force_fault(self, *kinds: str) -> None:
        """Make the next business calls fail with these faults, in order."""
        with self._rng_lock:
            self._faults_forced.extend(kinds)

    def update_employee(self, open_user_id: str, **changes: Any) -> None:
        """Change a directory entry (name, mobile, stopped...); its update time becomes now."""
        self.staff = [
            replace(e, **changes, updated_ms=self.clock.now_ms()) if e.open_user_id == open_user_id else e
            for e in self.staff
        ]

    def user_by_open_id(self, open_user_id: str) -> str | None:
        """Whether an openUserId belongs to this tenant (returns it) or not (None)."""
        return open_user_id if any(e.open_user_id == open_user_id for e in self.staff) else None

    # -- entry point -------------------------------------------------------------------------------

    def handle(self, path: str, headers: Mapping[str, str], raw: bytes, query: str = "") -> Reply:
        """Answer one POST (`query`: the URL's query string, where `thirdTraceId` travels)."""
        if self.config.latency_ms:
            self._sleep(self.config.latency_ms / 1000)
        with self._rng_lock:
            self.counters.calls[path] = self.counters.calls.get(path, 0) + 1
        if self.config.require_trace_id and not self._fresh_trace_id(query):
            return Reply(body=self._envelope(BAD_TRACE_ID))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return Reply(body=self._envelope(param_error("请求体不是合法的JSON")))
        if not isinstance(body, dict):
            return Reply(body=self._envelope(param_error("请求体必须是JSON对象")))
        try:
            if path in TOKEN_PATHS:
                return Reply(body=self._token(path, body))
            user = self._authenticate(path, headers, body)
            if not self.limiter.admit(path):
                self.counters.throttled += 1
                code = self.config.throttle_code
                raise SandboxError(code, THROTTLE_MESSAGES.get(code, "接口调用超过限制"))
            if not self.quota.take():
                raise SandboxError(30002, "当天访问频次超限（0点重新统计）")
            fault = self._pick_fault()
            if fault == "http_502":
                return Reply(status=502, body={"message": "Bad Gateway"})
            if fault == "disconnect":
                return Reply(drop=True)
            if fault == "system_busy":
                raise SandboxError(-1, "系统繁忙", "系统繁忙,请稍后重试")
            if fault == "throttle":
                raise SandboxError(self.config.throttle_code,
                                   THROTTLE_MESSAGES.get(self.config.throttle_code, ""))
            return Reply(body=self._envelope(None, self._route(path, body, user), user))
        except SandboxError as exc:
            return Reply(body=self._envelope(exc))

    def _fresh_trace_id(self, query: str) -> bool:
        """A UUID in `thirdTraceId`, not seen before (the docs: a new UUIDv4 on every call)."""
        values = parse_qs(query).get("thirdTraceId") or [""]
        try:
            trace = str(uuid.UUID(values[0]))
        except ValueError:
            return False
        with self._rng_lock:
            if trace in self._trace_ids:
                return False
            self._trace_ids.add(trace)
        return True

    def _pick_fault(self) -> str | None:
        with self._rng_lock:
            if self._faults_forced:
                self.counters.faults += 1
                return self._faults_forced.pop(0)
            if self.config.fail_rate and self._rng.random() < self.config.fail_rate:
                self.counters.faults += 1
                return self._rng.choice(self.config.faults)
        return None

    def _envelope(self, error: SandboxError | None, data: dict[str, Any] | None = None,
                  user: str | None = None) -> dict[str, Any]:
        trace = (f"E-O.{self.credentials.ea if user else 'null'}.{'1000' if user else '-1000'}-"
                 f"{secrets.token_hex(16)}")
        if error is not None:
            return {"traceId": trace, "errorCode": error.code, "errorMessage": error.message,
                    "errorDescription": error.description}
        return {
            "traceId": trace, "errorCode": 0, "errorMessage": "OK", "errorDescription": "success",
            **(data or {})
        }

    # -- auth ------------------------------------------------------------------------------------

    def _token(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        creds = self.credentials
        if not self.tokens.begin_grant():
            return self._envelope(SandboxError(14001, "接口调用超过限制",
                                               "获取token接口每分钟不能超过10次且不能并发调用"))
        try:
            if body.get("appId") != creds.app_id:
                raise SandboxError(20006, "appId或appSecret错误")
            if body.get("appSecret") != creds.app_secret:
                raise SandboxError(10006, "the parameter appSecret is missing or illegal",
                                   "缺少参数或参数不合法")
            if body.get("permanentCode") != creds.permanent_code:
                raise SandboxError(20015, "permanentCode错误")
            if path == "/oauth2.0/token":
                if body.get("grantType") != "app_secret":
                    raise param_error("grantType 只支持 app_secret")
                token = self.tokens.grant("header")
                return {"accessToken": token.value, "expiresIn": round(token.expires - self.clock.now()),
                        "ea": creds.ea, "appId": creds.app_id, "openUserId": creds.corp_id, "errorCode": 0,
                        "errorMessage": "success", "traceId": f"E-O.{creds.ea}-{secrets.token_hex(8)}"}
            token = self.tokens.grant("body")
            return {"errorCode": 0, "errorMessage": "success", "corpAccessToken": token.value,
                    "corpId": creds.corp_id, "expiresIn": round(token.expires - self.clock.now())}
        except SandboxError as exc:
            return self._envelope(exc)
        finally:
            self.tokens.end_grant()

    def _authenticate(self, path: str, headers: Mapping[str, str], body: dict[str, Any]) -> str:
        lowered = {k.lower(): v for k, v in headers.items()}
        bearer = lowered.get("authorization", "")
        if bearer:
            value = bearer[7:] if bearer.lower().startswith("bearer ") else bearer
            if not self.tokens.valid(value, "header") or lowered.get("x-fs-ea") != self.credentials.ea:
                raise BAD_TOKEN
            emp = next((e for e in self.staff if e.user_id == lowered.get("x-fs-userid")), None)
            if emp is None:
                raise SandboxError(20012, "openUserId not found")
            return emp.open_user_id
        if not body.get("corpAccessToken"):
            raise NO_CREDENTIALS
        if not self.tokens.valid(body["corpAccessToken"],
                                 "body") or body.get("corpId") != self.credentials.corp_id:
            raise BAD_TOKEN
        if path.startswith(("/cgi/user/", "/cgi/message/", "/cgi/department/")):
            return self.credentials.open_user_id
        user = body.get("currentOpenUserId")
        if not user:
            raise SandboxError(10010, "the parameter openUserId is missing or illegal",
                               "缺少参数或参数不合法")
        if self.user_by_open_id(str(user)) is None:
            raise SandboxError(20012, "openUserId not found", "员工不存在")
        return str(user)

    # -- routes ------------------------------------------------------------------------------------

    def _route(self, path: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        given = body.get("data")
        data: dict[str, Any] = given if isinstance(given, dict) else {}
        if path == "/cgi/user/getByMobile":
            found = [e for e in self.staff if e.mobile == body.get("mobile")]
            return {
                "empList": [{"openUserId": e.open_user_id, "name": e.name, "mobile": e.mobile} for e in found]
            }
        if path == "/cgi/user/get":
            emp = next((e for e in self.staff if e.open_user_id == body.get("openUserId")), None)
            if emp is None:
                raise SandboxError(20012, "openUserId not found", "员工不存在")
            return directory.user(emp, bool(body.get("showDepartmentIdsDetail")))
        if path in ("/cgi/user/list", "/cgi/user/simpleList"):
            return directory.department_members(self.staff, body, simple=path.endswith("simpleList"))
        if path == "/cgi/user/get/batchByUpdTime":
            return directory.changed_since(self.staff, body)
        if path == "/cgi/message/send":
            to = body.get("toUser")
            if not isinstance(to, list) or not to or len(to) > 500:
                raise SandboxError(10015, "the parameter toUser is missing or illegal",
                                   "缺少参数或参数不合法")
            if body.get("msgType") != "text" or not (body.get("text") or {}).get("content"):
                raise SandboxError(12003, "不支持的消息类型或消息内容为空")
            self.messages.append(
                {"toUser": to, "content": body["text"]["content"], "at": self.clock.now_ms()})
            return {}
        if path == "/cgi/crm/v2/object/list":
            return {"data": {"objects": [
                {"describeApiName": name, "describeDisplayName": spec["display"],
                 "defineType": "custom" if spec.get("custom") else "package", "isActive": True}
                for name, spec in schema.OBJECTS.items()]}}
        if path == "/cgi/crm/v2/object/describe":
            api_name = data.get("apiName") or body.get("apiName")
            self.store.table(str(api_name))
            return {"data": {"describe": schema.describe(str(api_name))}}
        # documented under the custom prefix only, for any object (example: AccountObj)
        if path in FIND_PATHS:
            return self._find(path.rsplit("/", 1)[1], body, data)
        for prefix, custom in (("/cgi/crm/v2/data/", False), ("/cgi/crm/custom/v2/data/", True),
                               ("/cgi/crm/custom/data/", True)):
            if path.startswith(prefix):
                return self._data(path[len(prefix):], custom, body, data, user)
        raise SandboxError(10006, "the parameter path is missing or illegal", "缺少参数或参数不合法")

    def _object(self, api_name: Any, custom: bool) -> str:
        self.store.table(api_name)
        if str(api_name).endswith("__c") != custom:
            raise SandboxError(10006, "the parameter apiName is missing or illegal",
                               f"对象 {api_name} 请使用{'自定义' if not custom else '预设'}对象接口")
        return str(api_name)

    def _data(self, action: str, custom: bool, body: dict[str, Any], data: dict[str, Any],
              user: str) -> dict[str, Any]:
        store = self.store
        if action in ("create", "update"):
            obj = data.get("object_data")
            if not isinstance(obj, dict):
                raise SandboxError(10006, "the parameter object_data is missing or illegal",
                                   "缺少参数或参数不合法")
            api_name = self._object(obj.get("dataObjectApiName"), custom)
            if action == "create":
                record = store.create(api_name, obj, user)
                return {"dataId": record["_id"]}
            if not obj.get("_id"):
                raise SandboxError(-1, "java.lang.NullPointerException", "系统异常")
            store.update(api_name, str(obj["_id"]), obj, user, bool(data.get("skipDataStatusValidate")))
            return {}
        api_name = self._object(data.get("dataObjectApiName"), custom)
        if action == "query":
            info = data.get("search_query_info")
            if not isinstance(info, dict):
                raise param_error("search_query_info 不能为空")
            page, total = store.query(api_name, info, count=wants_total(data))
            records = [self._render(api_name, r, info.get("fieldProjection"), bool(body.get("includeNull")))
                       for r in page]
            return {
                "data": {
                    "dataList": records, "offset": info.get("offset", 0), "limit": info.get("limit", 20),
                    "total": total
                }
            }
        if action == "get":
            return {
                "data": self._render(api_name, store.get(api_name, data.get("objectDataId")), None, False)
            }
        if action == "invalid":
            ids = data.get("idList") if "idList" in data else [data.get("object_data_id")]
            for rid in ids or []:
                store.set_life_status(api_name, str(rid), "invalid", user)
            return {}
        if action in ("delete", "recover"):
            ids = data.get("idList")
            if not isinstance(ids, list) or not ids:
                raise param_error("idList 不能为空")
            for rid in ids:
                if action == "delete":
                    store.delete(api_name, str(rid))
                else:
                    store.set_life_status(api_name, str(rid), "normal", user)
            return {}
        if action == "changeOwner":
            for item in data.get("Data") or []:
                owner = item.get("ownerId")
                if isinstance(owner, str):
                    owner = [owner]
                store.change_owner(api_name, str(item.get("objectDataId")), list(owner or []), user)
            return {}
        raise SandboxError(10006, "the parameter path is missing or illegal", "缺少参数或参数不合法")

    def _find(self, action: str, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """findSimple / findOne: a query by search_query_info with `field_projection` beside it, not a get
        by id.

        findSimple answers like query (`dataList`, `offset`, `limit`, `total`); findOne answers the first
        match as `data` (null when nothing matches)."""
        api_name = self.store.table(data.get("dataObjectApiName")).api_name
        info = data.get("search_query_info")
        if not isinstance(info, dict):
            raise param_error("search_query_info 不能为空")
        projection = next((data[k] for k in ("field_projection", "field-projection") if k in data),
                          info.get("fieldProjection"))
        if projection is not None and not isinstance(projection, list):
            raise param_error("field_projection 必须是数组")
        include_null = bool(body.get("includeNull"))
        if action == "findOne":
            page, _ = self.store.query(api_name, {**info, "limit": 1, "offset": info.get("offset", 0)})
            return {"data": self._render(api_name, page[0], projection, include_null) if page else None}
        page, total = self.store.query(api_name, info, count=wants_total(data))
        return {"data": {"dataList": [self._render(api_name, r, projection, include_null) for r in page],
                         "offset": info.get("offset", 0), "limit": info.get("limit", 20), "total": total}}

    def _render(self, api_name: str, record: dict[str, Any], projection: Any,
                include_null: bool) -> dict[str, Any]:
        fields = schema.FIELD_CACHE[api_name]
        out = dict(record)
        for name, meta in fields.items():
            target = meta.get("target_api_name")
            if target and name in out:
                ref = self.store.tables[target].rows.get(out[name])
                if ref is not None and "name" in ref:
                    out[f"{name}__r"] = ref["name"]
        if isinstance(projection, list) and projection:
            keep = {"_id", *projection}
            out = {k: v for k, v in out.items() if k in keep or k.removesuffix("__r") in keep}
        if include_null:  # nulls for the object's empty fields; a name the object does not have stays absent
            for name in projection or fields:
                if name in fields:
                    out.setdefault(name, None)
        return out
