"""Issue 11.4: the sandboxes' contracts follow the sandbox clock, so a demo at any date shows a realistic mix
(running, ending within 30 days, ended), not every contract expired."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from connector.adapters.fxiaoke.sandbox import SandboxApp, SandboxConfig
from connector.adapters.zoho.sandbox import ZohoSandbox

DAY_MS = 86_400_000


def _mix(ends: list[date], today: date) -> tuple[int, int, int]:
    ended = sum(e < today for e in ends)
    soon = sum(today <= e <= today + timedelta(days=30) for e in ends)
    return ended, soon, len(ends) - ended - soon


def test_zoho_contracts_follow_the_org_clock() -> None:
    for today in (date(2026, 12, 10), date(2031, 5, 1)):
        now = datetime(today.year, today.month, today.day, 8, tzinfo=UTC).timestamp()
        sb = ZohoSandbox(seed=200, clock=lambda now=now: now)
        ends = [date.fromisoformat(d["Valid_Until"]) for d in sb.org.modules["Deals"].records.values()
                if d["Valid_Until"] > d["Valid_From"]]
        ended, soon, running = _mix(ends, today)
        assert running > len(ends) / 2 and ended > 0 and soon > 0, (today, ended, soon, running)


def test_fxiaoke_contracts_follow_the_tenant_clock() -> None:
    app = SandboxApp(SandboxConfig(seed=200))
    today = datetime.fromtimestamp(app.clock.now(), UTC).date()
    rows = app.store.table("prepay_contract__c").rows.values()
    ends = [datetime.fromtimestamp(r["valid_until__c"] / 1000, UTC).date() for r in rows
            if r["valid_until__c"] > r["valid_from__c"]]
    ended, soon, running = _mix(ends, today)
    assert running > len(ends) / 2 and ended > 0 and soon > 0, (today, ended, soon, running)
