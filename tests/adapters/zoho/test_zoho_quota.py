"""Zoho's used-up daily credits resume at the org's midnight; its paging refuses a repeated token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from zoho_helpers import API, TOKEN_URL, error_body, token_body

from connector.adapters.errors import QuotaExhausted
from connector.adapters.paging import PagingLoop
from connector.adapters.zoho.client import ZohoClient

KOLKATA = ZoneInfo("Asia/Kolkata")
URL = f"{API}/crm/v8/Accounts/1"


@pytest.fixture(autouse=True)
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=token_body())
        yield mock


def _exhaust(make_client: Callable[..., ZohoClient], mocked: Any, date_header: str,
             **kw: Any) -> QuotaExhausted:
    mocked.get(URL, status=429, json=error_body("TOO_MANY_REQUESTS"),
               headers={"X-API-CREDITS-REMAINING": "0", "Date": date_header})
    client = make_client(**kw)
    client.meter.remaining = 0
    with pytest.raises(QuotaExhausted) as info:
        client.get_record("Accounts", "1")
    return info.value


def test_quota_resumes_at_the_orgs_next_midnight_by_zohos_clock(make_client: Callable[..., ZohoClient],
                                                                 mocked: Any) -> None:
    # 20:00 UTC on 3 March is 01:30 on 4 March in Kolkata: the org's next midnight is 5 March 00:00 IST.
    error = _exhaust(make_client, mocked, "Tue, 03 Mar 2026 20:00:00 GMT", org_zone=KOLKATA)
    assert error.resume_at == datetime(2026, 3, 4, 18, 30, tzinfo=timezone.utc)
    assert error.run_status == "budget" and not error.retriable
    assert error.run_reason().endswith("; the next run resumes after 2026-03-04 18:30:00 UTC")


def test_quota_resume_follows_the_org_zone_not_a_day_from_now(make_client: Callable[..., ZohoClient],
                                                              mocked: Any) -> None:
    error = _exhaust(make_client, mocked, "Tue, 03 Mar 2026 17:00:00 GMT", org_zone=KOLKATA)  # 22:30 IST
    assert error.resume_at == datetime(2026, 3, 3, 18, 30, tzinfo=timezone.utc)  # an hour and a half later
    client = make_client(org_zone=ZoneInfo("America/New_York"))
    assert client.quota_resets_at(datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 9, 4, 0, tzinfo=timezone.utc)  # New York's midnight after the DST change (EDT)


def test_a_repeated_page_token_is_refused(make_client: Callable[..., ZohoClient], mocked: Any) -> None:
    row = {"id": "1", "Account_Name": "A", "Modified_Time": "2026-01-05T10:15:07+05:30"}
    page = {"data": [row], "info": {"more_records": True, "next_page_token": "tok-1"}}
    mocked.get(f"{API}/crm/v8/Accounts", json=page)
    with pytest.raises(PagingLoop, match="Accounts: paging did not advance: the answer names page "
                       "token 'tok-1', the page just read"):
        list(make_client().iter_records("Accounts", ["Account_Name"]))
    assert len([c for c in mocked.calls if "/crm/v8/Accounts" in c.request.url]) == 2  # no third read
