"""Request bodies over a size limit are refused with 413 before they are parsed.

A pure ASGI middleware: a `Content-Length` over the limit is answered at once, without reading the
body; a body without one (chunked) is counted as it streams in, and the moment it passes the limit the
client gets the 413 and the app sees a disconnect, so no route ever parses an oversized body.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.api import problems

MIB = 1024 * 1024
DEFAULT_LIMIT = 1 * MIB
BATCH_LIMIT = 4 * MIB  # 1,000 batch items of a few hundred bytes each, with room to spare


def limit_for(path: str) -> int:
    """The body limit of a path: the batch endpoint takes more than the rest."""
    return BATCH_LIMIT if path.endswith(":batch") else DEFAULT_LIMIT


class BodyLimit:
    """Refuse request bodies larger than `limit_of(path)` bytes with a 413 problem."""

    def __init__(self, app: ASGIApp, limit_of: Callable[[str], int] = limit_for) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        seen = 0
        refused = False

        async def counting() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await _refuse(scope, receive, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:  # the 413 is the answer; whatever the app says after it is dropped
                await send(message)

        await self.app(scope, counting, guarded)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problems.response(problems.API_PROBLEMS["payload-too-large"],
                                 f"the request body is over the limit of {limit} bytes for this endpoint",
                                 instance=scope.get("path"), limit=limit, headers={"Connection": "close"})
    await response(scope, receive, send)
