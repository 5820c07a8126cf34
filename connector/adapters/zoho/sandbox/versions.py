"""The CRM API versions the sandbox serves (`/crm/v2` ... `/crm/v8`) and how they differ, as data.

Each difference is one the vendor documents; `docs/zoho.md` ("API versions") has the table and its sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiVersion:
    """What one version of the CRM API does differently."""

    name: str
    fields_required: bool  # a record list without `fields` is refused (REQUIRED_PARAM_MISSING)
    discrete_limit: int | None  # page numbers reach at most this many records; None: no cap
    page_token: bool  # list answers carry next_page_token (page_token paging past the cap)
    coql_limit: int  # most records one COQL call returns
    coql_total: int  # most records LIMIT/OFFSET paging reaches
    module_status: bool  # modules carry `status` (v5+) instead of `visible`
    field_id_meta: bool  # `id` is listed as a field of every module (v4+)


_V2 = ApiVersion("v2", fields_required=False, discrete_limit=None, page_token=False, coql_limit=200,
                 coql_total=10_000, module_status=False, field_id_meta=False)
_V3 = ApiVersion("v3", fields_required=True, discrete_limit=2000, page_token=True, coql_limit=200,
                 coql_total=10_000, module_status=False, field_id_meta=False)
_V4 = ApiVersion("v4", fields_required=True, discrete_limit=2000, page_token=True, coql_limit=2000,
                 coql_total=10_000, module_status=False, field_id_meta=True)
_V5 = ApiVersion("v5", fields_required=True, discrete_limit=2000, page_token=True, coql_limit=2000,
                 coql_total=10_000, module_status=True, field_id_meta=True)
_V7 = ApiVersion("v7", fields_required=True, discrete_limit=2000, page_token=True, coql_limit=2000,
                 coql_total=100_000, module_status=True, field_id_meta=True)

VERSIONS: dict[str, ApiVersion] = {
    "v2": _V2, "v2.1": ApiVersion(**{**_V2.__dict__, "name": "v2.1"}),
    "v3": _V3, "v4": _V4, "v5": _V5, "v6": ApiVersion(**{**_V5.__dict__, "name": "v6"}),
    "v7": _V7, "v8": ApiVersion(**{**_V7.__dict__, "name": "v8"}),
}
LATEST = VERSIONS["v8"]
_PATH = re.compile(r"^/crm/(v2\.1|v[2-8])(/.*)?$")


def split_path(path: str) -> tuple[ApiVersion, str] | None:
    """`/crm/v3/Accounts` -> (v3, `/Accounts`); None for a path outside the served versions."""
    match = _PATH.match(path)
    if match is None:
        return None
    return VERSIONS[match.group(1)], match.group(2) or "/"
