"""The daily API budget: counted before each call, a clean stop before the limit, resumed the next day."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.sync import tables as t
from connector.adapters.errors import QuotaExhausted
from connector.sync.budget import ApiBudget

sys.path.insert(0, str(Path(__file__).parent.parent / "sync"))
from helpers import Clock, zoho_engine  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_charges_count_per_day_in_the_connection_zone(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/b.db")
    clock = Clock(datetime(2026, 11, 27, 15, 59, tzinfo=timezone.utc))  # 23:59 in Shanghai
    budget = ApiBudget(engine, "zoho", limit=12, unit="credits", tz=SHANGHAI, clock=clock)
    budget.charge("read", 1)
    budget.charge("write", 10)
    assert budget.used() == 11 and budget.remaining() == 1
    with pytest.raises(QuotaExhausted, match=r"would be passed by a deleted call costing 2 \(11 spent on "
                       r"2026-11-27\)$") as info:
        budget.charge("deleted", 2)
    assert info.value.resume_at == datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)
    assert info.value.run_reason().endswith(
        "(11 spent on 2026-11-27); the next run resumes after 2026-11-28 00:00 CST")
    assert info.value.run_status == "budget" and not info.value.retriable
    assert budget.used() == 11  # a refused call is not counted
    clock.advance(minutes=2)  # a new day in Shanghai, still the 27th in UTC
    assert budget.used() == 0 and budget.day() == "2026-11-28"
    budget.charge("deleted", 2)
    calls = ApiBudget(engine, "zoho", limit=3, unit="calls", tz=SHANGHAI, clock=clock)
    calls.charge("write", 10)
    assert calls.used() == 2  # calls count one per call, whatever its credits
    with engine.connect() as conn:
        rows = {r.day: (r.calls, r.credits) for r in conn.execute(select(t.api_usage))}
    assert rows == {"2026-11-27": (2, 11), "2026-11-28": (2, 12)}


def _ledger_totals(engine: object) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for v in Ledger(engine).accounts():  # type: ignore[arg-type]
        out[v.customer] = out.get(v.customer, Decimal(0)) + v.balance
    return {k: v for k, v in out.items() if v}


def test_run_stops_cleanly_at_the_budget_and_the_next_day_completes(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc))
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/a.db", seed=150, clock=clock)
    eng.budget = ApiBudget(eng.engine, "zoho", limit=9, unit="credits", tz=SHANGHAI, clock=clock)
    first = eng.run()
    assert first.status == "budget"
    assert ("daily API budget of 9 credits" in first.reason
            and "resumes after 2026-11-28 00:00 CST" in first.reason)
    assert eng.budget.used() <= 9
    with eng.engine.connect() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == first.run_id)).one()
    assert row.status == "budget" and row.reason == first.reason
    again = eng.run()  # still the same day: stops before spending anything
    assert again.status == "budget" and eng.budget.used() <= 9
    clock.advance(days=1)
    eng.budget.limit = 10_000
    done = eng.run()
    assert done.status in ("ok", "partial"), done.reason
    ref, _ref_sb = zoho_engine(f"sqlite:///{tmp_path}/ref.db", seed=150, clock=Clock(clock.now))
    assert ref.run().status in ("ok", "partial")
    assert _ledger_totals(eng.engine) == _ledger_totals(ref.engine)
    assert eng.run().records_written == 0  # nothing left over or doubled


class RecordingAdapter:
    """Writes succeed and are recorded in order; the gate may refuse a call, as the budget does."""

    def __init__(self, allow: int) -> None:
        self.sent: list[list[str]] = []
        self.allow = allow

    def write_fields(self, module: str, updates: list) -> list:
        from connector.adapters.base import WriteResult

        if len(self.sent) >= self.allow:
            raise QuotaExhausted("budget", resume_at=datetime(2026, 11, 28, tzinfo=timezone.utc))
        self.sent.append([u.crm_id for u in updates])
        return [WriteResult(crm_id=u.crm_id, ok=True) for u in updates]


def test_money_writes_go_first_and_a_tight_budget_stops_on_cosmetic_ones(tmp_path: Path) -> None:
    from connector.mapping import load_mapping
    from connector.mapping.loader import default_mapping_path
    from connector.sync.context import Ctx, RunReport
    from connector.sync.push import push

    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    mapping = load_mapping(default_mapping_path("zoho")).model_copy(update={"write_batch_size": 1})
    now = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)
    payloads = [("tier-only", {"Prepaid_Tier": "Gold", "Prepaid_Runway_Days": 12}),
                ("flags", {"Prepaid_Flags": "low_balance"}),
                ("balance", {"Prepaid_Balance": "10.00", "Prepaid_Tier": "Silver"}),
                ("available", {"Prepaid_Available": "5.00"})]
    with engine.begin() as conn:
        for crm_id, payload in payloads:
            conn.execute(t.outbox.insert().values(connection="zoho", run_id=1, kind="write",
                                                  module="Accounts", crm_id=crm_id,
                                                  payload=__import__("json").dumps(payload), evidence="{}",
                                                  status="planned", attempts=0, created_at=now,
                                                  updated_at=now))
    adapter = RecordingAdapter(allow=2)
    ctx = Ctx(connection="zoho", engine=engine, ledger=Ledger(engine), adapter=adapter,  # type: ignore[arg-type]
              mapping=mapping, clock=lambda: now, overlap=timedelta(0), report=RunReport(connection="zoho"))
    with pytest.raises(QuotaExhausted):
        push(ctx)
    assert adapter.sent == [["balance"], ["available"]]
    adapter.allow = 10
    push(ctx)  # the next window: the rest, flags before cosmetic fields
    assert adapter.sent[2:] == [["flags"], ["tier-only"]]


def test_the_crms_own_quota_running_out_stops_the_run_like_a_budget(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc))
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/q.db", seed=150, clock=clock, daily_credits=6)
    report = eng.run()
    assert report.status == "budget" and "daily API allowance is used up" in report.reason
    assert report.resumes_at is not None
    with eng.engine.connect() as conn:
        assert conn.execute(select(t.runs.c.status)).scalar() == "budget"
