"""CRM push receivers: `POST /hooks/zoho/{connection}` takes Zoho's notification calls.

The route answers at once: it reads the body (refused past `MAX_BODY`), parses it as Zoho's notification
document, has the hub check channel id and token against the connection's stored channel and, when they
match, arm the connection's debounced incremental run; the run itself happens later, on its own thread.
Answers: 200 accepted, 403 refused (unknown connection, wrong channel or token: the same answer for each,
so a caller learns nothing), 400 not a notification, 413 too large. Fxiaoke has no record-change push, so
there is no Fxiaoke route: its connections stay on polling.

Mount it with `app.include_router(hooks_router(hub))`.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from connector.adapters.zoho.watch import parse_notice
from connector.push.hub import PushHub

MAX_BODY = 256 * 1024  # a notification names at most 100 ids; anything near this is not one
ZOHO_PATH = "/hooks/zoho/{connection}"


def hook_url(public_url: str, crm: str, connection: str) -> str:
    """The notify URL a CRM is given: the public base URL of `serve` plus the receiver's path."""
    from urllib.parse import quote

    return f"{public_url.rstrip('/')}/hooks/{crm}/{quote(connection, safe='')}"


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than `MAX_BODY` (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def hooks_router(hub: PushHub) -> APIRouter:
    """The receivers, bound to `hub`."""
    router = APIRouter(tags=["hooks"])

    @router.post(ZOHO_PATH, summary="Zoho CRM notification (Notifications API callback)")
    async def zoho_notification(connection: str, request: Request) -> JSONResponse:
        body = await _body(request)
        if body is None:
            return JSONResponse({"status": "error", "message": "body too large"}, status_code=413)
        try:
            notice = parse_notice(json.loads(body))
        except ValueError as exc:
            return JSONResponse({"status": "error", "message": f"not a Zoho notification: {exc}"},
                                status_code=400)
        if not await run_in_threadpool(hub.receive, connection, notice):
            return JSONResponse({"status": "refused"}, status_code=403)
        return JSONResponse({"status": "accepted"}, status_code=200)

    return router
