"""What every sandbox endpoint shares: Zoho's whole-request error and the readers of common parameters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

MAX_FIELDS = 50
Result = tuple[int, Any]


class ApiError(Exception):
    """A whole-request error answered with Zoho's flat envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details or {}, "message": message, "status": "error"}


def since_header(headers: Mapping[str, str]) -> int | None:
    """`If-Modified-Since` as epoch seconds (None when absent); it must carry an offset."""
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


def int_param(params: Mapping[str, str], name: str, default: int) -> int:
    """An integer query parameter, or Zoho's INVALID_DATA naming it."""
    try:
        return int(params.get(name, default))
    except ValueError:
        raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": name}) from None


def field_list(raw: str | None, required: bool) -> list[str] | None:
    """The `fields` parameter as names (None when absent and optional), at most `MAX_FIELDS`."""
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
