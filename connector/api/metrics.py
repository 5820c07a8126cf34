"""`GET /metrics`: Prometheus text format through prometheus_client, on a registry of the app's own.

Two kinds of figures. Database figures (runs, budgets, flags, liability; `connector.ops.metrics`) are
read at scrape time, so every `serve` on one database answers the same. HTTP figures (requests by
route and status, latency histograms) are counted by `HttpMetrics` in this process: with several
`serve` processes, scrape each and sum in Prometheus. One process runs one uvicorn worker, so
prometheus_client's multiprocess mode is not needed.

The route label is the route's template (`/api/v1/customers/{customer}/balance`), never the raw path:
no customer key or API key reaches a label, and the label set is bounded by the routes of the app
(`unmatched` for the rest; unusual methods are `other`).

`/metrics` is open by default: `serve` listens on 127.0.0.1 unless told otherwise, and the figures hold
no secret and no customer key. `serve --metrics-auth key` makes it want an API key of any scope, for a
`serve` reachable from other machines (Prometheus sends it with `authorization: {credentials: ...}`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import Engine
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.api.auth import bearer, reader
from connector.api.services import Services, services
from connector.config import load_settings, locate_config
from connector.errors import ConnectorError
from connector.ops.metrics import NS, BudgetSpec, DatabaseCollector, budgets_of

log = logging.getLogger(__name__)
MetricsAuth = Literal["open", "key"]
METRICS_AUTH: tuple[str, ...] = ("open", "key")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: seconds; fine below 50 ms, where single requests should be, coarse above
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
router = APIRouter(tags=["metrics"])


class Metrics:
    """The app's registry: HTTP counters of this process, the database collector, process figures."""

    def __init__(self, engine: Engine, config: str | Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{NS}_http_requests", "HTTP requests answered, by method, route template "
                                "and status", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(f"{NS}_http_request_duration_seconds", "time from the request's arrival to "
                                 "the end of its answer, by method and route template", ["method", "route"],
                                 buckets=BUCKETS, registry=self.registry)
        self.engine = engine
        self.config = config
        self.registry.register(DatabaseCollector(engine, self._budgets))
        ProcessCollector(registry=self.registry)
        self._budget_cache: dict[str, BudgetSpec] | None = None

    def _budgets(self) -> dict[str, BudgetSpec]:
        """The configured connections' budgets, read from the config file once per process."""
        if self._budget_cache is None:
            self._budget_cache = {}
            try:
                if locate_config(self.config) is not None:
                    self._budget_cache = budgets_of(self.engine, load_settings(self.config))
            except ConnectorError as exc:
                log.warning("metrics leave out the API budgets: %s", exc)
        return self._budget_cache

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The text exposition of everything registered."""
        return generate_latest(self.registry)


class HttpMetrics:
    """ASGI middleware (outermost, so 413s and problem answers count too): times every HTTP request and
    counts it under its route template once the router has matched it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it when its answer has gone (or it failed)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None)
            self.metrics.observe(scope["method"], route if isinstance(route, str) else "unmatched", status,
                                 time.perf_counter() - started)


async def guard(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                svc: Annotated[Services, Depends(services)]) -> None:
    """With `--metrics-auth key`, any valid API key; else nothing."""
    if request.app.state.metrics_auth == "key":
        await reader(creds, svc)


@router.get("/metrics", dependencies=[Depends(guard)], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."}})
def metrics(request: Request) -> Response:
    """Prometheus figures: runs, API budget, open flags, ledger liability (read from the database now)
    and this process's HTTP requests and latencies. An API key is needed only under `--metrics-auth key`."""
    found: Metrics = request.app.state.metrics
    return Response(found.render(), media_type=CONTENT_TYPE_LATEST)
