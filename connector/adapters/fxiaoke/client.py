"""Fxiaoke Open API client: one POST/JSON chokepoint, envelope errors, retries, keyset paging.

Every call goes through `FxiaokeClient.request`: pace the path (100 calls / 20 s per interface),
sign the body with the corp token (legacy body credentials), send, read the envelope, refresh the
token once on 20016, and raise the typed error the `errorCode` stands for. Transient failures
(throttling codes, -1/-2, network errors, 5xx) are retried by the shared tenacity policy.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import requests

from connector import money, redact
from connector.adapters.base import ApiUsage, CallGate, WaitListener
from connector.adapters.errors import (
    CredentialsRejected,
    CrmConnectionError,
    RateLimited,
    ServerError,
    UnexpectedAnswer,
)
from connector.adapters.fxiaoke.auth import CorpToken, FxiaokeAuth
from connector.adapters.fxiaoke.envelope import CHINA_TZ, CRM, TOKEN_EXPIRED, error_for
from connector.adapters.http import RetryPolicy, ServerClock, connection_failure
from connector.adapters.paging import PagingLoop, Paginator
from connector.errors import InvalidInput

log = logging.getLogger("connector.fxiaoke")

PAGE_LIMIT = 100
OFFSET_CAP = 10_000
DEFAULT_PACE = (100, 20.0)
WHOLE_COMPANY = 999999  # the department id /cgi/user/list reads as "the whole company"


def data_prefix(api_name: str) -> str:
    """Path prefix for an object: custom objects (`__c`) live under /cgi/crm/custom/v2/data."""
    return "/cgi/crm/custom/v2/data" if api_name.endswith("__c") else "/cgi/crm/v2/data"


def to_epoch_ms(value: date | datetime) -> int:
    """Epoch milliseconds; a bare date means midnight China time, as Fxiaoke stores dates."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"naive datetime {value.isoformat()} refused: give a timezone",
                               value=str(value))
        return int(value.timestamp() * 1000)
    return int(datetime(value.year, value.month, value.day, tzinfo=CHINA_TZ).timestamp() * 1000)


def from_epoch_ms(value: Any) -> datetime:
    """An aware UTC datetime from epoch milliseconds (int or numeric string); ValueError when out of range."""
    ms = int(value)
    if not 0 <= ms < 253_370_764_800_000:  # 1970-01-01 .. 9998-12-31 (connector.timeutil's range)
        raise ValueError(f"{value!r} is not a time between 1970 and 9998 in epoch milliseconds")
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(microsecond=ms % 1000 * 1000)


def encode_value(value: Any, field: str = "value") -> Any:
    """A Python value in the wire format Fxiaoke expects (Decimal -> string, dates -> epoch ms)."""
    if isinstance(value, float):
        raise InvalidInput(f"{field}: floats are not written to the CRM ({value!r}); use Decimal",
                           field=field)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"{field}: {value} is not a finite amount", field=field)
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return to_epoch_ms(value)
    if isinstance(value, (list, tuple)):
        return [encode_value(v, field) for v in value]
    return value


def pace_floor(calls: int, pace: tuple[int, float] = DEFAULT_PACE) -> float:
    """The least time in seconds that `calls` calls on one path can span under `pace` (limit, window).

    The limit is a sliding window, so the first `limit` calls may go at once and each further `limit`
    one window later: the last call starts no earlier than window x floor((calls - 1) / limit).
    Benchmarks print their elapsed time against it."""
    limit, window = pace
    return window * ((calls - 1) // limit) if calls > 0 else 0.0


class PathPacer:
    """Client-side sliding window per path, so we stay under the server's per-interface limit."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float],
                 sleep: Callable[[float], None], margin: float = 0.25) -> None:
        self.limit = limit
        self.window = window
        # The server starts its window when a request arrives, a little after we sent it; waiting
        # slightly longer than the window keeps uneven latency from costing a throttled call.
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self.waited = 0.0

    def wait_time(self, path: str) -> float:
        """Seconds until `path` may be called again without exceeding the window."""
        now = self._clock()
        calls = self._calls[path]
        while calls and calls[0] <= now - self.window - self.margin:
            calls.popleft()
        if len(calls) < self.limit:
            return 0.0
        return calls[0] + self.window + self.margin - now

    def acquire(self, path: str) -> None:
        """Block (through the injected sleep) until a call to `path` fits, then count it."""
        while True:
            with self._lock:
                delay = self.wait_time(path)
                if delay <= 0:
                    self._calls[path].append(self._clock())
                    return
            self.waited += delay
            self._sleep(delay)


@dataclasses.dataclass
class ClientStats:
    """Counters for usage reports and the benchmark."""

    calls: int = 0
    by_path: dict[str, int] = dataclasses.field(default_factory=dict)
    retries: int = 0
    retry_sleep: float = 0.0
    throttled: int = 0


class FxiaokeClient:
    """Thin client over the Fxiaoke Open API (legacy body-credential style)."""

    def __init__(self, base_url: str, auth: FxiaokeAuth, *, session: requests.Session | None = None,
                 open_user_id: str | None = None, mobile: str | None = None,
                 retry: RetryPolicy | None = None, pace: tuple[int, float] | None = DEFAULT_PACE,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 timeout: float = 60.0, trigger_approval_flow: bool = False,
                 trigger_work_flow: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self.session = session or requests.Session()
        self._open_user_id = open_user_id
        self._mobile = mobile
        self._user_lock = threading.Lock()
        base_retry = retry or RetryPolicy()
        self._sleep_fn = base_retry.sleep or sleep
        self._retry = dataclasses.replace(base_retry, sleep=self._retry_sleep)
        self._pace_sleep_fn = sleep
        self._pacer = PathPacer(pace[0], pace[1], clock, self._pace_sleep) if pace else None
        self._wall_clock = wall_clock
        self._timeout = timeout
        self.trigger_approval_flow = trigger_approval_flow
        self.trigger_work_flow = trigger_work_flow
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()
        self.gate: CallGate | None = None  # asked before every call (the API budget)
        self.on_wait: WaitListener | None = None  # told before every wait (a progress display)
        self.server_clock = ServerClock()  # Fxiaoke's time, from the Date header of every answer

    def __repr__(self) -> str:
        return f"FxiaokeClient(base_url={self.base_url!r})"

    @property
    def token_calls(self) -> int:
        """How many times the token endpoint was called."""
        return self._auth.token_calls

    @property
    def paced_seconds(self) -> float:
        """Seconds spent waiting on the client-side per-path pacer."""
        return self._pacer.waited if self._pacer else 0.0

    def usage(self) -> ApiUsage:
        """Calls made so far: business calls by path, plus token calls."""
        with self._stats_lock:
            by_type = dict(self.stats.by_path)
            calls = self.stats.calls
        by_type["token"] = self.token_calls
        return ApiUsage(calls=calls + self.token_calls, by_type=by_type)

    def _pace_sleep(self, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(seconds, "pacing calls under Fxiaoke's per-interface limit")
        self._pace_sleep_fn(seconds)

    def _retry_sleep(self, seconds: float) -> None:
        with self._stats_lock:
            self.stats.retries += 1
            self.stats.retry_sleep += seconds
        self._sleep_fn(seconds)

    # -- the chokepoint -------------------------------------------------------------------------

    def request(self, path: str, payload: Mapping[str, Any], *, as_user: bool = True) -> dict[str, Any]:
        """POST `payload` (plus credentials) to `path`; return the success envelope or raise."""
        request = f"POST {path}"
        for attempt in self._retry.retrying(describe=lambda: request, on_wait=self.on_wait):
            with attempt:
                return self._call_once(path, payload, as_user=as_user)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _call_once(self, path: str, payload: Mapping[str, Any], *, as_user: bool) -> dict[str, Any]:
        user = self.open_user_id() if as_user else None
        token = self._auth.token()
        body = self._send(path, self._sign(payload, token, user))
        refreshed = False
        if body.get("errorCode") == TOKEN_EXPIRED:
            # The token died early (revoked or server clock ahead): refresh once, retry once.
            log.info("fxiaoke token expired on %s; refreshing once", path)
            self._auth.invalidate(token)
            body = self._send(path, self._sign(payload, self._auth.token(), user))
            refreshed = True
        error = error_for(body, request=f"POST {path}", now=self._wall_clock(), secrets=self._auth.secrets())
        if refreshed and error is not None and error.code == str(TOKEN_EXPIRED):
            # A token issued a moment ago is refused too: no call of the run can succeed.
            raise CredentialsRejected(f"a freshly issued corp access token was refused too: {error.message}",
                                      crm=CRM, status=200, code=error.code, request=error.request,
                                      trace_id=error.trace_id)
        if error is not None:
            if isinstance(error, RateLimited):
                with self._stats_lock:
                    self.stats.throttled += 1
                if self._pacer is not None:
                    error.retry_after = max(0.5, self._pacer.wait_time(path))
            raise error
        return body

    def _sign(self, payload: Mapping[str, Any], token: CorpToken, user: str | None) -> dict[str, Any]:
        body = {"corpAccessToken": token.value, "corpId": token.corp_id, **payload}
        if user is not None:
            body["currentOpenUserId"] = user
        return body

    def _send(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.gate is not None:
            self.gate(path, 1)  # may refuse: nothing is sent
        if self._pacer is not None:
            self._pacer.acquire(path)
        with self._stats_lock:
            self.stats.calls += 1
            self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        secrets = self._auth.secrets()
        try:
            response = self.session.post(f"{self.base_url}{path}", params={"thirdTraceId": str(uuid.uuid4())},
                                          json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            raise CrmConnectionError(f"cannot reach Fxiaoke: {connection_failure(exc, self.base_url)}",
                                     crm=CRM, request=f"POST {path}") from None
        self.server_clock.saw(response.headers.get("Date"))
        if response.status_code >= 500 or response.status_code == 429:
            raise ServerError(f"HTTP {response.status_code} from gateway", crm=CRM,
                              status=response.status_code, request=f"POST {path}")
        if response.status_code != 200:
            raise UnexpectedAnswer(f"unexpected HTTP {response.status_code}: "
                                   f"{redact.text(response.text[:300], secrets)}",
                                   crm=CRM, status=response.status_code, request=f"POST {path}")
        try:
            parsed = money.json_loads(response.content)  # every number exact: no float on the way
        except ValueError:
            raise ServerError("response body is not JSON", crm=CRM, status=200,
                              request=f"POST {path}") from None
        if not isinstance(parsed, dict):
            raise ServerError("response body is not a JSON object", crm=CRM, status=200,
                              request=f"POST {path}")
        return parsed

    # -- users --------------------------------------------------------------------------------------

    def open_user_id(self) -> str:
        """The acting employee (`currentOpenUserId`): configured, or resolved once by mobile number."""
        if self._open_user_id:
            return self._open_user_id
        with self._user_lock:
            if self._open_user_id:
                return self._open_user_id
            if not self._mobile:
                raise InvalidInput("fxiaoke: set open_user_id or a mobile number to resolve it",
                                   field="fxiaoke.open_user_id")
            body = self.request("/cgi/user/getByMobile", {"mobile": self._mobile}, as_user=False)
            employees = body.get("empList") or []
            if not employees or not employees[0].get("openUserId"):
                raise InvalidInput("fxiaoke: no employee has the configured mobile number",
                                   field="fxiaoke.mobile")
            self._open_user_id = str(employees[0]["openUserId"])
            return self._open_user_id

    def employee_names(self) -> dict[str, str]:
        """openUserId -> name for the whole company (stopped employees included): one /cgi/user/list call."""
        body = self.request("/cgi/user/list", {"departmentId": WHOLE_COMPANY, "fetchChild": True,
                                            "showDepartmentIdsDetail": False}, as_user=False)
        users = body.get("userList")
        if not isinstance(users, list):
            raise ServerError("/cgi/user/list answered without userList", crm=CRM, status=200,
                              request="POST /cgi/user/list", trace_id=body.get("traceId"))
        return {str(u["openUserId"]): str(u["name"]) for u in users
                if isinstance(u, dict) and u.get("openUserId") and u.get("name")}

    # -- reading --------------------------------------------------------------------------------------

    def query_page(self, api_name: str, *, filters: Sequence[Mapping[str, Any]] = (),
                   orders: Sequence[Mapping[str, Any]] = (), offset: int = 0, limit: int = PAGE_LIMIT,
                   projection: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One page of a query; offset must stay within the server's 10,000 cap."""
        if not 0 < limit <= PAGE_LIMIT:
            raise InvalidInput(f"limit must be 1..{PAGE_LIMIT}, got {limit}", field="limit")
        if offset > OFFSET_CAP or offset % limit:
            raise InvalidInput(f"offset {offset} must be a multiple of limit and at most {OFFSET_CAP}",
                               field="offset")
        info: dict[str, Any] = {"limit": limit, "offset": offset, "filters": [dict(f) for f in filters],
                                "orders": [dict(o) for o in orders]}
        if projection:
            info["fieldProjection"] = list(projection)
        # includeNull: an empty field comes back as null instead of being left out, so a field that is
        # left out is one the API user cannot see (or that does not exist), never a value to act on
        query = {"dataObjectApiName": api_name, "find_explicit_total_num": False, "search_query_info": info}
        body = self.request(f"{data_prefix(api_name)}/query", {"includeNull": True, "data": query})
        data = body.get("data") or {}
        records = data.get("dataList") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise ServerError("query answered without data.dataList", crm=CRM, status=200,
                              request=f"POST {data_prefix(api_name)}/query", trace_id=body.get("traceId"))
        return records

    def iter_records(self, api_name: str, *, filters: Sequence[Mapping[str, Any]] = (),
                     projection: Sequence[str] | None = None, since_ms: int | None = None,
                     page_size: int = PAGE_LIMIT) -> Iterator[dict[str, Any]]:
        """Yield every matching record once, lazily, by keyset paging on `_id` (never by offset).

        Offset paging stops at 10,000 rows, so each page asks for `_id GT <last _id>` ordered by
        `_id` with offset 0 (the vendor's deep-paging recipe). It stops at the first short page.
        """
        base = [dict(f) for f in filters]
        if since_ms is not None:
            base.append({"field_name": "last_modified_time", "field_values": [since_ms], "operator": "GTE"})
        if projection is not None and "_id" not in projection:
            projection = ["_id", *projection]
        request = f"POST {data_prefix(api_name)}/query"
        # Where the read is: the last `_id` read (None before the first page).
        pages: Paginator[str | None] = Paginator(None, crm=CRM, what=api_name, request=request,
                                                 show=lambda last: f"_id {last!r}")
        while True:
            last_id = pages.current
            page_filters = list(base)
            if last_id is not None:
                page_filters.append({"field_name": "_id", "field_values": [last_id], "operator": "GT"})
            page = self.query_page(api_name, filters=page_filters,
                                   orders=[{"fieldName": "_id",
                                            "isAsc": True}], offset=0, limit=page_size, projection=projection)
            for record in page:
                record_id = record.get("_id")
                if not isinstance(record_id, str) or (last_id is not None and record_id <= last_id):
                    # A keyset that does not advance would loop forever or repeat records.
                    raise PagingLoop(f"{api_name}: paging did not advance past _id {last_id!r} "
                                     f"(got {record_id!r})", crm=CRM, status=200, request=request)
                last_id = record_id
                yield record
            if len(page) < page_size:
                pages.finish()
                return
            pages.advance(last_id)

    def get_record(self, api_name: str, record_id: str) -> dict[str, Any]:
        """One record by id."""
        body = self.request(f"{data_prefix(api_name)}/get",
                         {"data": {"dataObjectApiName": api_name, "objectDataId": record_id}})
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # -- writing -------------------------------------------------------------------------------------

    def _write_flags(self) -> dict[str, Any]:
        return {"triggerApprovalFlow": self.trigger_approval_flow, "triggerWorkFlow": self.trigger_work_flow}

    def create(self, api_name: str, object_data: Mapping[str, Any],
               details: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
        """Create a record; returns its `_id` (the top-level `dataId`)."""
        data: dict[str, Any] = {"object_data": {**{k: encode_value(v, k) for k, v in object_data.items()},
                                                "dataObjectApiName": api_name}}
        if details:
            data["details"] = {k: [dict(r) for r in rows] for k, rows in details.items()}
        body = self.request(f"{data_prefix(api_name)}/create", {**self._write_flags(), "data": data})
        data_id = body.get("dataId") or (body.get("data") or {}).get("_id")
        if not data_id:
            raise ServerError(f"{api_name}: create answered without dataId", crm=CRM, status=200,
                              request=f"POST {data_prefix(api_name)}/create", trace_id=body.get("traceId"))
        return str(data_id)

    def update(self, api_name: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Partial update: only `fields` change; `_id` travels inside `object_data`."""
        object_data = {k: encode_value(v, k) for k, v in fields.items()}
        object_data.update({"_id": record_id, "dataObjectApiName": api_name})
        self.request(f"{data_prefix(api_name)}/update",
                     {**self._write_flags(), "data": {"object_data": object_data}})

    def invalid(self, api_name: str, record_id: str) -> None:
        """Invalidate (作废, soft-delete) a record."""
        self.request(f"{data_prefix(api_name)}/invalid",
                  {"data": {"dataObjectApiName": api_name, "object_data_id": record_id}})

    def fields(self, api_name: str) -> dict[str, Any]:
        """Field metadata (`data.describe.fields`) of an object."""
        body = self.request("/cgi/crm/v2/object/describe",
                         {"includeDetail": True, "data": {"apiName": api_name, "includeDetail": True}})
        describe = (body.get("data") or {}).get("describe") or {}
        fields = describe.get("fields")
        return fields if isinstance(fields, dict) else {}

    def modules(self) -> list[dict[str, Any]]:
        """The tenant's objects (`describeApiName`, `defineType`, `isActive`)."""
        body = self.request("/cgi/crm/v2/object/list", {"data": {}})
        return list((body.get("data") or {}).get("objects") or [])

    def send_text(self, to_users: Sequence[str], content: str) -> None:
        """Send a text message to employees (openUserIds) through /cgi/message/send."""
        self.request("/cgi/message/send", {"toUser": list(to_users)[:500], "msgType": "text",
                                        "text": {"content": content}}, as_user=False)
