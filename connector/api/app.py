"""The FastAPI app: routers, problem answers for every error, the body limit, the documents.

`create_app(engine, config)` wires one router per concern. A later feature adds its router here
(`app.include_router(...)` for `/hooks/...` or `/metrics`) without touching the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from connector import __version__
from connector.api import customer_routes, docs, health, hooks, ledger_routes, metrics, problems
from connector.api.limits import BodyLimit
from connector.api.metrics import HttpMetrics, Metrics, MetricsAuth
from connector.api.problems import API_PROBLEMS, PROBLEMS, Problem
from connector.api.services import Services, build_services
from connector.db.engine import storage_full
from connector.errors import ConfigError, ConnectorError, DatabaseUnavailable, InvalidInput, StorageFull
from connector.push.hub import PushHub

log = logging.getLogger(__name__)
# Every router of the app, one module each; a new feature (push receivers, metrics) adds its own here.
ROUTERS = (health.router, ledger_routes.router, customer_routes.router, docs.router, metrics.router)
DESCRIPTION = ("The prepayment ledger over HTTP. Money is a decimal string (\"10.00\"), never a JSON number. "
               "Every request needs `Authorization: Bearer <API key>`; every posting needs an "
               "`Idempotency-Key`. Errors are RFC 9457 problem details (`application/problem+json`).")


def create_app(engine: Engine, config: str | Path | None = None, *,
               services: Services | None = None, metrics_auth: MetricsAuth = "open",
               push: PushHub | None = None) -> FastAPI:
    """The API on `engine` (the schema is not touched: `/readyz` says whether it is current);
    `metrics_auth="key"` makes `/metrics` want an API key. With a config file (or `push`), the CRM push
    receivers too (`/hooks/...`), on `app.state.push_hub`."""
    app = FastAPI(title="prepaid-sync ledger API", version=__version__, description=DESCRIPTION,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.services = services or build_services(engine, config)
    for router in ROUTERS:
        app.include_router(router)
    app.state.metrics = Metrics(engine, config)
    app.state.metrics_auth = metrics_auth
    # The push receivers are bound to this app's hub (its channels and debounced runs), so they are made here.
    app.state.push_hub = push or _push_hub(engine, config)
    if app.state.push_hub is not None:
        app.include_router(hooks.hooks_router(app.state.push_hub))
    app.add_middleware(BodyLimit)
    app.add_middleware(HttpMetrics, metrics=app.state.metrics)  # added last: the outermost of ours
    _handlers(app)
    return app


def _push_hub(engine: Engine, config: str | Path | None) -> PushHub | None:
    """The push hub of the configured connections (renewing their channels every minute); None without a
    config file, as then no connection could run."""
    from connector.app import push_runner, renew_push_channels
    from connector.config import load_settings

    try:
        loaded = load_settings(config)
    except ConfigError as exc:
        log.info("no push receivers: %s", exc)
        return None
    hub = PushHub(engine, push_runner(loaded, engine))
    hub.keep_renewing(lambda: renew_push_channels(loaded, engine, hub.channels))
    return hub


def _handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problems.from_problem(exc, request.url.path)

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConnectorError)
        if problems.problem_for(exc).status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return problems.from_error(exc, request.url.path)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "")).removeprefix(
            "Value error, ")} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problems.response(API_PROBLEMS["bad-request"], "the request body is not valid JSON",
                                     instance=request.url.path)
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problems.response(PROBLEMS[InvalidInput], f"{first['field']}: {first['message']}",
                                 instance=request.url.path, field=first["field"] or None, errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        slug = {404: "no-route", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}.get(
            exc.status_code, "bad-request")
        return problems.response(API_PROBLEMS[slug], str(exc.detail), instance=request.url.path,
                                 headers=dict(exc.headers or {}))

    async def on_database(request: Request, exc: Exception) -> Response:
        log.error("%s %s: database error: %s", request.method, request.url.path, exc)
        error: ConnectorError = (StorageFull("the database's disk is full; nothing was written")
                                 if storage_full(exc) else
                                 DatabaseUnavailable("the database failed or is busy; try again"))
        return problems.from_error(error, request.url.path)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return problems.response(PROBLEMS[ConnectorError], "an unexpected failure; the server log has more",
                                 instance=request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ConnectorError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(SQLAlchemyError, on_database)
    app.add_exception_handler(Exception, on_crash)


def _field(loc: object) -> str:
    """`('body', 'items', 3, 'amount')` as `items[3].amount`; a header or query parameter by its name."""
    parts = list(loc) if isinstance(loc, (list, tuple)) else [loc]
    if parts and parts[0] in ("body", "query", "header", "path"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
