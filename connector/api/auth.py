"""Bearer API keys on every `/api/v1` route: none, unknown or revoked is 401; a read key writing is 403.

The key is read from `Authorization: Bearer <key>` and never logged, echoed or stored (only its hash
is, see `keys`); refusals name the key by nothing at all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connector.api.keys import Principal
from connector.api.problems import Problem
from connector.api.services import Services, services

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key from `prepaid-sync apikey create NAME --scope read|write`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="prepaid-sync"'}


def reader(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           svc: Annotated[Services, Depends(services)]) -> Principal:
    """Any valid key (read or write)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Problem("unauthorized", "no API key: send `Authorization: Bearer <key>`", headers=_CHALLENGE)
    principal = svc.keys.verify(creds.credentials)
    if principal is None:
        raise Problem("unauthorized", "the API key is not valid (unknown or revoked)", headers=_CHALLENGE)
    return principal


def writer(principal: Annotated[Principal, Depends(reader)]) -> Principal:
    """A write key."""
    if not principal.may_write():
        raise Problem("forbidden", f"API key {principal.name!r} has scope read; posting money needs a key "
                      "with scope write")
    return principal


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
