"""Zoho CRM v8 REST client: one request chokepoint, typed errors, lazy paging, batched writes.

Wire formats live in `wire`, call costs and the meter in `usage`, per-record write results in
`outcomes`; their public names are imported here too, so `client.encode` etc. keep working.

Everything goes through `ZohoClient.request`: auth header, timeouts, the retry policy, the
refresh-once on INVALID_TOKEN, the error table and the usage meter. JSON numbers are parsed as
`Decimal` and `Decimal` is written back as an exact JSON number, so money never becomes a float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

import requests
from tenacity import retry_if_exception

from connector import money, redact
from connector.adapters.base import ApiUsage, CallGate, WaitListener
from connector.adapters.errors import (
    AuthError,
    CredentialsRejected,
    CrmConnectionError,
    CrmError,
    CrmNotFound,
    CrmRequestError,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    ServerError,
    UnexpectedAnswer,
)
from connector.adapters.http import RetryPolicy, ServerClock, connection_failure
from connector.adapters.paging import Paginator
from connector.adapters.zoho.auth import ZohoAuth
from connector.adapters.zoho.outcomes import RecordOutcome, outcomes
from connector.adapters.zoho.usage import UsageMeter, coql_credits, write_credits
from connector.adapters.zoho.wire import encode, format_time, parse_time
from connector.backoff import parse_retry_after
from connector.errors import is_retriable
from connector.timeutil import next_midnight, utcnow, zone

log = logging.getLogger("connector.zoho.client")

API_VERSION = "v8"
MAX_FIELDS = 50
PER_PAGE = 200
DISCRETE_LIMIT = 2000
TOKEN_CHAIN_LIMIT = 100_000
WRITE_BATCH = 100
DEFAULT_TIMEOUT = (5.0, 60.0)
_EMPTY = (204, 304)

# Zoho error code -> what the caller can do about it. Status decides when the code is unknown.
ERROR_TABLE: dict[str, type[CrmError]] = {
    "INVALID_TOKEN": AuthError,
    "AUTHENTICATION_FAILURE": AuthError,
    "OAUTH_SCOPE_MISMATCH": AuthError,
    "INVALID_OAUTHSCOPE": AuthError,
    "NO_PERMISSION": PermissionDenied,
    "AUTHORIZATION_FAILED": PermissionDenied,
    "INVALID_MODULE": CrmNotFound,
    "INVALID_URL_PATTERN": CrmNotFound,
    "NOT_FOUND": CrmNotFound,
    "TOO_MANY_REQUESTS": RateLimited,
    "INTERNAL_ERROR": ServerError,
}
STATUS_TABLE: dict[int, type[CrmError]] = {401: AuthError, 403: PermissionDenied, 404: CrmNotFound,
                                           429: RateLimited}


@dataclass(frozen=True)
class ZohoResponse:
    """A decoded answer: status, JSON body (numbers as Decimal) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]


class _RecentKeys:
    """(id, Modified_Time) keys seen within the last `window` of modification time."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.keys: dict[tuple[str, datetime], None] = {}
        self.newest: datetime | None = None
        self.prune_at = 4 * PER_PAGE

    def seen(self, record_id: str, modified: datetime) -> bool:
        """True if this key was seen before; records it otherwise."""
        key = (record_id, modified)
        if key in self.keys:
            return True
        self.keys[key] = None
        if self.newest is None or modified > self.newest:
            self.newest = modified
        if len(self.keys) > self.prune_at:
            floor = self.newest - self.window
            self.keys = {k: None for k in self.keys if k[1] >= floor}
            # Many records can share the window (a bulk edit stamps thousands within a second):
            # prune again only once the set has doubled, so the cost stays linear in the records.
            self.prune_at = max(4 * PER_PAGE, 2 * len(self.keys))
        return False


class ZohoClient:
    """Talks to one Zoho CRM org; thread-safe, with one `requests.Session`.

    `org_zone` is the org's time zone, whose midnight starts a new day of API credits (default: this
    machine's zone, as for the connection's API budget)."""

    def __init__(self, auth: ZohoAuth, *, session: requests.Session | None = None,
                 retry: RetryPolicy | None = None, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 trigger: Sequence[str] = (), api_version: str = API_VERSION,
                 org_zone: tzinfo | None = None) -> None:
        self.auth = auth
        self.org_zone = org_zone or zone(None)
        self.session = session or auth.session
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.trigger = list(trigger)
        self.api_version = api_version
        self.meter = UsageMeter()
        self.gate: CallGate | None = None  # asked before every call (the API budget)
        self.on_wait: WaitListener | None = None  # told before every retry wait (a progress display)
        self.server_clock = ServerClock()  # Zoho's time, from the Date header of every answer

    # -- the chokepoint -------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None, call_type: str = "read",
                credits: int = 1, idempotent: bool = True) -> ZohoResponse:
        """Send one API call with auth, timeouts, retries and typed errors; `path` is under /crm/{v}."""
        query = f"?{urlencode(params)}" if params else ""
        described = f"{method} /crm/{self.api_version}{path}{query}"
        retrying = self.retry.retrying(lambda: redact.url(described), on_wait=self.on_wait)
        if not idempotent:
            # A POST that created records cannot be repeated blindly; only a 429 (refused before
            # any work) or a failed connect is safe to retry. Callers re-check and retry the rest.
            retrying = retrying.copy(retry=retry_if_exception(_safe_to_repeat))
        else:
            # Other calls retry every transient failure except a refused or timed-out connect, which
            # fails at once naming the server (as this client always has; writes do repeat it, above).
            retrying = retrying.copy(retry=retry_if_exception(_retried_when_idempotent))
        for attempt in retrying:
            with attempt:
                return self._send(method, path, params, body, headers, call_type, credits, described)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any,
              headers: Mapping[str, str] | None, call_type: str, credits: int,
              described: str) -> ZohoResponse:
        refreshed = False
        data = encode(body) if body is not None else None
        while True:
            if self.gate is not None:
                self.gate(call_type, credits)  # may refuse: nothing is sent
            token = self.auth.access_token()
            url = f"{self.auth.api_domain}/crm/{self.api_version}{path}"
            send_headers = {"Authorization": f"Zoho-oauthtoken {token}", "Accept": "application/json"}
            if data is not None:
                send_headers["Content-Type"] = "application/json"
            send_headers.update(headers or {})
            try:
                resp = self.session.request(method, url, params=params, data=data.encode() if data else None,
                                            headers=send_headers, timeout=self.timeout)
            except requests.ConnectionError as exc:
                self.meter.add(call_type, credits, charged=False)
                never_sent = isinstance(exc, requests.ConnectTimeout) or "Connection refused" in str(exc)
                raise CrmConnectionError(f"cannot reach Zoho: {connection_failure(exc, url)}", crm="zoho",
                                         request=redact.url(described), never_sent=never_sent) from None
            except requests.Timeout as exc:
                self.meter.add(call_type, credits, charged=False)
                raise CrmConnectionError(f"Zoho did not answer in time: {type(exc).__name__}", crm="zoho",
                                         request=redact.url(described)) from None
            self.server_clock.saw(resp.headers.get("Date"))
            parsed = self._decode(resp)
            remaining = resp.headers.get("X-API-CREDITS-REMAINING")
            if remaining is not None and remaining.strip().lstrip("-").isdigit():
                self.meter.remaining = int(remaining)
            charged = resp.status_code < 500 and resp.status_code not in (401, 429)
            self.meter.add(call_type, credits, charged=charged)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %d", redact.url(described), resp.status_code)
            if resp.status_code < 400 or (resp.status_code == 400 and _is_record_list(parsed)):
                return ZohoResponse(resp.status_code, parsed, resp.headers)
            error = self._error(resp.status_code, parsed, resp.headers, described, credits)
            if error.code == "INVALID_TOKEN" and not refreshed:
                refreshed = True
                self.auth.invalidate(token)
                continue
            if error.code == "INVALID_TOKEN":
                # A token issued a moment ago is refused too: no call can succeed.
                raise CredentialsRejected(f"Zoho refused a freshly issued access token too: {error.message}",
                                          crm="zoho", status=error.status, code=error.code,
                                          request=error.request)
            raise error

    def quota_resets_at(self, now: datetime | None = None) -> datetime:
        """When a used-up day of API credits is over: the org's next midnight after `now` (default: the time
        of Zoho's latest answer, else this machine's), in UTC."""
        return next_midnight(now or self.server_clock.latest or utcnow(), self.org_zone)

    @staticmethod
    def _decode(resp: requests.Response) -> Any:
        if resp.status_code in _EMPTY or not resp.content:
            return None
        try:
            return money.json_loads(resp.content)  # every number exact: no float on the way
        except ValueError:
            return {"body": resp.text[:500]}

    def _error(self, status: int, body: Any, headers: Mapping[str, str], described: str,
               credits: int = 1) -> CrmError:
        body = body if isinstance(body, dict) else {}
        code = str(body.get("code", ""))
        message = str(body.get("message", "") or f"HTTP {status}")
        cls = ERROR_TABLE.get(code) or STATUS_TABLE.get(status) or (
            ServerError if status >= 500 else CrmRequestError)
        secrets = self.auth.secrets()
        kwargs: dict[str, Any] = {"crm": "zoho", "status": status, "code": code,
                                  "details": redact.data(body.get("details")),
                                  "request": redact.text(redact.url(described), secrets)}
        message = redact.text(message, secrets)
        # Zoho answers 429 both for the concurrency limit (wait and retry) and for used-up daily credits
        # (retrying is futile): X-API-CREDITS-REMAINING below this call's cost tells them apart. The run
        # comes back at the org's next midnight, by Zoho's own clock when its answer said the time.
        if cls is RateLimited and self.meter.remaining is not None and self.meter.remaining < credits:
            return QuotaExhausted(f"Zoho daily API credits are used up: {message}",
                                  resume_at=self.quota_resets_at(), **kwargs)
        if issubclass(cls, RateLimited):
            return cls(message, retry_after=parse_retry_after(headers.get("Retry-After")), **kwargs)
        return cls(message, **kwargs)

    # -- reading --------------------------------------------------------------------------

    def iter_records(self, module: str, fields: Sequence[str], *, since: datetime | None = None,
                     overlap: timedelta = timedelta(seconds=1),
                     per_page: int = PER_PAGE) -> Iterator[dict[str, Any]]:
        """Yield records of `module` modified after `since - overlap` (all when None), oldest first.

        Sorted by Modified_Time ascending; follows `next_page_token` (required past 2,000
        records); restarts a new token chain from the last Modified_Time when a chain reaches
        Zoho's 100,000-record cap or its token expires; never yields an (id, Modified_Time) twice.
        """
        names = list(dict.fromkeys([*fields, "Modified_Time"]))
        if len(names) > MAX_FIELDS:
            raise CrmRequestError(
                f"{module}: {len(names)} fields requested, Zoho allows {MAX_FIELDS} per call", crm="zoho",
                code="LIMIT_EXCEEDED")
        overlap = max(overlap, timedelta(seconds=1))
        dedup = _RecentKeys(overlap + timedelta(seconds=1))
        floor = since - overlap if since else None
        base = {
            "fields": ",".join(names), "per_page": per_page, "sort_by": "Modified_Time", "sort_order": "asc"
        }
        while True:
            chain = _Chain()
            for record, modified in self._chain(module, base, floor, chain):
                if not dedup.seen(str(record["id"]), modified):
                    yield record
            if not chain.cut or chain.newest is None:
                return
            # Zoho caps a token chain at 100,000 records (and tokens expire): start a new chain at
            # the last second we saw; the overlap is de-duplicated above.
            restart = chain.newest - timedelta(seconds=1)
            if floor is not None and restart <= floor:
                raise CrmRequestError(f"{module}: more than {TOKEN_CHAIN_LIMIT} records share one second of "
                                      "Modified_Time; cannot page further", crm="zoho",
                                      code="PAGINATION_LIMIT_EXCEEDED")
            floor = restart
            log.info("%s: token chain ended at %s, continuing from there", module, format_time(chain.newest))

    def _chain(self, module: str, base: Mapping[str, Any], floor: datetime | None, chain: _Chain
               ) -> Iterator[tuple[dict[str, Any], datetime]]:
        headers = {"If-Modified-Since": format_time(floor)} if floor else None
        # Where the read is: (page token, page number); pages are numbered until Zoho hands out a token.
        pages: Paginator[tuple[str | None, int]] = Paginator((None, 1), crm="zoho", what=module,
                                                             request=f"GET /crm/{self.api_version}/{module}",
                                                             show=_page_name)
        fetched = 0
        while True:
            token, page = pages.current
            params = dict(base)
            if token:
                params["page_token"] = token
            elif page > 1:
                params["page"] = page
            try:
                resp = self.request("GET", f"/{module}", params=params, headers=headers, call_type="read")
            except CrmRequestError as exc:
                if token and exc.code in ("PAGINATION_LIMIT_EXCEEDED", "EXPIRED_VALUE",
                                          "TOKEN_BOUND_DATA_MISMATCH"):
                    chain.cut = True
                    return
                raise
            if resp.status in _EMPTY or not resp.body:
                return
            rows = resp.body.get("data") or []
            info = resp.body.get("info") or {}
            more, next_token = info.get("more_records"), info.get("next_page_token")
            del resp, info  # only this page's rows stay in memory while the next page is read
            for row in rows:
                modified = parse_time(str(row["Modified_Time"]))
                chain.newest = modified
                yield row, modified
            fetched += len(rows)
            del rows
            if not more:
                pages.finish()
                return
            if next_token:
                pages.advance((str(next_token), page))  # the same token again would read the same page
                if fetched >= TOKEN_CHAIN_LIMIT:
                    chain.cut = True
                    return
            else:
                pages.advance((token, page + 1))
                if page * int(base["per_page"]) >= DISCRETE_LIMIT:
                    raise UnexpectedAnswer(
                        f"{module}: more than {DISCRETE_LIMIT} records but no next_page_token", crm="zoho",
                        code="DISCRETE_PAGINATION_LIMIT_EXCEEDED")

    def iter_deleted(self, module: str, *, since: datetime | None = None, deleted_type: str = "all",
                     per_page: int = PER_PAGE) -> Iterator[dict[str, Any]]:
        """Yield deleted-record entries of `module` (recycle bin and permanent) since `since`."""
        headers = {"If-Modified-Since": format_time(since)} if since else None
        pages: Paginator[int] = Paginator(1, crm="zoho", what=f"{module} deletions",
                                          request=f"GET /crm/{self.api_version}/{module}/deleted")
        while True:
            resp = self.request("GET", f"/{module}/deleted", headers=headers, call_type="deleted", credits=2,
                                params={"type": deleted_type, "page": pages.current, "per_page": per_page})
            if resp.status in _EMPTY or not resp.body:
                return
            yield from resp.body.get("data") or []
            if not (resp.body.get("info") or {}).get("more_records"):
                pages.finish()
                return
            pages.advance(pages.current + 1)

    def get_record(self, module: str, record_id: str, fields: Sequence[str] = ()) -> dict[str, Any] | None:
        """One record by id, or None when Zoho answers 204."""
        params = {"fields": ",".join(fields)} if fields else None
        resp = self.request("GET", f"/{module}/{record_id}", params=params, call_type="read")
        if resp.status in _EMPTY or not resp.body:
            return None
        rows = resp.body.get("data") or []
        return rows[0] if rows else None

    def coql(self, query: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """Run one COQL select; returns its rows (empty on 204)."""
        resp = self.request("POST", "/coql", body={"select_query": query}, call_type="coql",
                            credits=coql_credits(limit))
        if resp.status in _EMPTY or not resp.body:
            return []
        return list(resp.body.get("data") or [])

    def fields(self, module: str) -> list[dict[str, Any]]:
        """Field metadata of a module (`GET /settings/fields?module=`)."""
        resp = self.request("GET", "/settings/fields", params={"module": module}, call_type="metadata")
        return list((resp.body or {}).get("fields") or [])

    def modules(self) -> list[dict[str, Any]]:
        """Module metadata (`GET /settings/modules`)."""
        resp = self.request("GET", "/settings/modules", call_type="metadata")
        return list((resp.body or {}).get("modules") or [])

    def create_fields(self, module: str, fields: Sequence[Mapping[str, Any]]) -> list[RecordOutcome]:
        """Create custom fields, at most 5 per call as Zoho allows."""
        out: list[RecordOutcome] = []
        for start in range(0, len(fields), 5):
            chunk = list(fields[start:start + 5])
            resp = self.request("POST", "/settings/fields", params={"module": module}, body={"fields": chunk},
                                call_type="metadata", idempotent=False)
            out.extend(outcomes((resp.body or {}).get("fields") or [], start, len(chunk), module))
        return out

    # -- writing --------------------------------------------------------------------------

    def insert(self, module: str, records: Sequence[Mapping[str, Any]]) -> list[RecordOutcome]:
        """Create records in batches of 100 (not idempotent: see `request`)."""
        return self._write("POST", f"/{module}", module, records, idempotent=False)

    def update(self, module: str, records: Sequence[Mapping[str, Any]]) -> list[RecordOutcome]:
        """Update records (each carries `id`) in batches of 100."""
        return self._write("PUT", f"/{module}", module, records)

    def upsert(self, module: str, records: Sequence[Mapping[str, Any]],
               duplicate_check_fields: Sequence[str] = ()) -> list[RecordOutcome]:
        """Insert-or-update in batches of 100, matched on `duplicate_check_fields`."""
        extra = {"duplicate_check_fields": list(duplicate_check_fields)} if duplicate_check_fields else {}
        return self._write("POST", f"/{module}/upsert", module, records, extra=extra)

    def _write(self, method: str, path: str, module: str, records: Sequence[Mapping[str, Any]], *,
               idempotent: bool = True, extra: Mapping[str, Any] | None = None) -> list[RecordOutcome]:
        out: list[RecordOutcome] = []
        for start in range(0, len(records), WRITE_BATCH):
            batch = list(records[start:start + WRITE_BATCH])
            body = {"data": batch, "trigger": self.trigger, **(extra or {})}
            resp = self.request(method, path, body=body, call_type="write", credits=write_credits(len(batch)),
                                idempotent=idempotent)
            out.extend(outcomes((resp.body or {}).get("data") or [], start, len(batch), module))
        return out

    # -- notifications (`/actions/watch`) ---------------------------------------------------

    def watch_enable(self, channels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Subscribe channels (`POST`): Zoho's result per channel, in order (400 and 207 included)."""
        return self._watch("POST", {"watch": list(channels)})

    def watch_update(self, channels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Change what each channel names (`PATCH`: a token or condition left out is kept)."""
        return self._watch("PATCH", {"watch": list(channels)})

    def watch_disable(self, channel_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Unsubscribe every module of these channels (`DELETE ?channel_ids=`)."""
        return self._watch("DELETE", None, {"channel_ids": ",".join(channel_ids)})

    def watch_details(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        """The live subscriptions (`GET`), one per channel and module; empty on 204."""
        return self._watch("GET", None, {"channel_id": channel_id} if channel_id else None)

    def _watch(self, method: str, body: Any, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        resp = self.request(method, "/actions/watch", params=params, body=body, call_type="watch")
        return [] if resp.status in _EMPTY or not resp.body else list(resp.body.get("watch") or [])

    def usage(self) -> ApiUsage:
        """Calls and credits spent so far."""
        return self.meter.snapshot()


@dataclass
class _Chain:
    cut: bool = False
    newest: datetime | None = None


def _page_name(where: tuple[str | None, int]) -> str:
    return f"page token {where[0]!r}" if where[0] else f"page {where[1]}"


def _retried_when_idempotent(exc: BaseException) -> bool:
    return is_retriable(exc) and not (isinstance(exc, CrmConnectionError) and exc.never_sent)


def _safe_to_repeat(exc: BaseException) -> bool:
    """For a call that is not idempotent: refused before any work (429), or never sent at all."""
    return isinstance(exc, RateLimited) or (isinstance(exc, CrmConnectionError) and exc.never_sent)


def _is_record_list(body: Any) -> bool:
    """A 400 that lists per-record (or per-channel) results: the caller reads them."""
    return isinstance(body, dict) and "code" not in body and (
        isinstance(body.get("data"), list) or isinstance(body.get("watch"), list))


