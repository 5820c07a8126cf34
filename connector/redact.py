"""One sanitizer for URLs, headers, bodies and messages: secrets never leave in clear."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_NAMES = frozenset({
    "access_token", "refresh_token", "client_secret", "client_id_secret", "password", "secret",
    "appsecret", "app_secret", "corpaccesstoken", "corp_access_token", "permanentcode", "permanent_code",
    "authorization", "token", "api_key", "apikey", "x-api-key", "cookie", "set-cookie",
})
# `code` is a secret only as the OAuth grant code in a query string
# (`?grant_type=authorization_code&code=...`); elsewhere a key ending in "code" is a vendor's error code
# (`errorCode`, `errcode`, Zoho's `"code": "INVALID_TOKEN"`), evidence to keep. Zoho grant codes also have the
# token shape `_ZOHO_TOKEN_RE` masks.
QUERY_SECRET_NAMES = SECRET_NAMES | {"code"}
_QUERY_CODE_RE = re.compile(r"(?i)((?:^|[?&\s])code=)([^&\s\"']+)")
# Zoho tokens look like 1000.<hex>.<hex>; bearer tokens follow "Zoho-oauthtoken" or "Bearer".
_TOKEN_RE = re.compile(r"(?i)(zoho-oauthtoken|bearer|basic)\s+[A-Za-z0-9._\-+/=]+")
_ZOHO_TOKEN_RE = re.compile(r"\b1000\.[0-9a-f]{16,}\.[0-9a-f]{16,}\b")
# prepaid-sync's own API keys (`connector.api.keys`): `ps_live_<key id>_<secret>`; the public key id stays.
_API_KEY_RE = re.compile(r"\b(ps_live_[0-9a-f]{12}_)[A-Za-z0-9_-]+")
# A key holding a secret: a secret name, alone or ending a longer identifier (ZOHO_CLIENT_SECRET=,
# "x-api-key":), starting where an identifier starts. An identifier that starts with an error word is a
# vendor's error code, not a key (`invalid_client_secret: Zoho token refresh failed`, `INVALID_TOKEN: invalid
# oauth token`): its text stays. An auth scheme (`Authorization: Bearer <token>`) stays too; _TOKEN_RE masks
# the token after it.
_ERROR_WORDS = ("invalid", "expired", "missing", "wrong", "bad", "unknown", "revoked")
# Keys and values may be quoted either way: JSON uses ", a Python repr (a dict in a message) uses '.
_KV_RE = re.compile(
    r'(?i)(["\']?(?<![A-Za-z0-9_-])(?!(?:' + "|".join(_ERROR_WORDS) + r')[_-])[A-Za-z0-9_-]*?(?:'
    + "|".join(sorted(SECRET_NAMES, key=len, reverse=True)) + r')["\']?\s*[:=]\s*["\']?)'
    r'(?!(?:zoho-oauthtoken|bearer)\s)([^"\'&,\s}]+)')
MAX_BODY = 2000


def is_secret_name(name: str) -> bool:
    """True for a header, query or JSON key that carries a credential."""
    return name.replace("-", "_").lower() in SECRET_NAMES or name.lower() in SECRET_NAMES


def text(value: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Mask credentials in free text: key=value pairs, auth headers, Zoho token shapes, known values."""
    out = _TOKEN_RE.sub(lambda m: f"{m.group(1)} {MASK}", value)
    out = _ZOHO_TOKEN_RE.sub(MASK, out)
    out = _API_KEY_RE.sub(lambda m: m.group(1) + MASK, out)
    out = _KV_RE.sub(lambda m: m.group(1) + MASK, out)
    out = _QUERY_CODE_RE.sub(lambda m: m.group(1) + MASK, out)
    for secret in extra_secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    if len(out) > MAX_BODY:
        out = out[:MAX_BODY] + f"... [{len(out) - MAX_BODY} more chars]"
    return out


def url(value: str) -> str:
    """Mask secret query parameters in a URL."""
    parts = urlsplit(value)
    if not parts.query:
        return value
    query = [(k, MASK if is_secret_name(k) or k.lower() in QUERY_SECRET_NAMES else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def headers(values: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of headers with credentials masked."""
    return {k: (MASK if is_secret_name(k) else v) for k, v in values.items()}


def data(value: Any) -> Any:
    """Recursively mask secret keys in JSON-like data."""
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_secret_name(k) else data(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [data(v) for v in value]
    if isinstance(value, str):
        return text(value)
    return value
