"""End to end: ZohoAdapter over real loopback HTTP against the sandbox, with faults and latency on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from zoho_helpers import sandbox_client

from connector.adapters.base import FieldUpdate, TaskRequest
from connector.adapters.errors import QuotaExhausted
from connector.adapters.http import RetryPolicy
from connector.adapters.zoho import ZohoAdapter, default_specs
from connector.domain import Contract, Customer, Deletion, Entity, Payment
from connector.errors import RecordRejected


@pytest.fixture
def faulty() -> Iterator[tuple[object, ZohoAdapter, list[float]]]:
    waits: list[float] = []
    with ZohoSandbox(seed=1200, fail_rate=0.15, latency_ms=2) as sb:
        adapter = ZohoAdapter(sandbox_client(sb, RetryPolicy(max_attempts=8, sleep=waits.append)))
        yield sb, adapter, waits
        adapter.close()


from connector.adapters.zoho.sandbox import ZohoSandbox  # noqa: E402


def test_full_pull_with_faults_returns_every_record_once(
        faulty: tuple[ZohoSandbox, ZohoAdapter, list[float]]) -> None:
    sb, adapter, waits = faulty
    specs = default_specs()
    customers = list(adapter.stream(specs[Entity.CUSTOMER]))
    live = sb.org.modules["Accounts"].records
    assert sorted(c.crm_id for c in customers) == sorted(live)
    assert all(isinstance(c, Customer) and c.owner_id for c in customers)
    assert sb.app.stats["faults"] > 0 and waits  # faults happened, retries waited (without sleeping)
    pages = -(-len(live) // 200)
    assert adapter.usage().by_type["read:credits"] == pages  # failed calls are not charged
    contracts = list(adapter.stream(specs[Entity.CONTRACT]))
    payments = list(adapter.stream(specs[Entity.PAYMENT]))
    bad = {b.record.split(":")[-1] for b in adapter.rejected}
    assert len(contracts) + len(bad & set(sb.org.modules["Deals"].records)) == len(
        sb.org.modules["Deals"].records)
    assert len(payments) == len(sb.org.modules["Prepaid_Payments"].records)
    sample = next(c for c in contracts if isinstance(c, Contract) and c.currency == "USD")
    assert isinstance(sample.prepay_amount, Decimal) and sample.customer_id and sample.valid_from
    assert all(isinstance(p, Payment) and isinstance(p.amount, Decimal) for p in payments)
    assert any("valid until" in b.reason for b in adapter.rejected)
    assert all(b.field and b.record.startswith("zoho:Deals:") for b in adapter.rejected)


def test_incremental_with_overlap_and_deletions() -> None:
    with ZohoSandbox(seed=300, latency_ms=1) as sb:
        adapter = ZohoAdapter(sandbox_client(sb))
        spec = default_specs()[Entity.CUSTOMER]
        everything = list(adapter.stream(spec))
        since = max(r.modified_at for r in everything if not isinstance(r, Deletion))
        ids = list(sb.org.modules["Accounts"].records)
        with sb.org.lock:
            sb.org.clock = lambda: since.timestamp()  # same second as the cursor: the classic "+1 s" loss
            sb.org.update(sb.org.modules["Accounts"], ids[3], {"Prepaid_Tier": "Gold"})
            sb.org.delete(sb.org.modules["Accounts"], ids[4])
        assert not [r for r in adapter.stream(spec, since=since, overlap=timedelta(seconds=2))
                    if isinstance(r, Deletion)]  # `/deleted` is read only when asked
        changed = list(adapter.stream(spec, since=since, overlap=timedelta(seconds=2), deletions_since=since))
        records = [r for r in changed if not isinstance(r, Deletion)]
        deletions = [r for r in changed if isinstance(r, Deletion)]
        assert ids[3] in {r.crm_id for r in records}
        assert len({(r.crm_id, r.modified_at) for r in records}) == len(records)
        assert [d.crm_id for d in deletions if d.crm_id == ids[4]] == [ids[4]]
        assert all(r.modified_at >= since - timedelta(seconds=2) for r in records)


def test_write_back_and_metadata_checks() -> None:
    with ZohoSandbox(seed=20, fail_rate=0.1) as sb:
        adapter = ZohoAdapter(sandbox_client(sb))
        ids = list(sb.org.modules["Accounts"].records)[:3]
        results = adapter.write_fields("Accounts", [
            FieldUpdate(
                crm_id=ids[0], values={
                    "Prepaid_Balance": Decimal("950.00"), "Prepaid_Tier": "Silver",
                    "Prepaid_Synced_At": datetime(2026, 1, 5, tzinfo=timezone.utc)
                }),
            FieldUpdate(crm_id=ids[1], values={"Prepaid_Balanse": Decimal("1")}),
            FieldUpdate(crm_id=ids[2], values={"Prepaid_Balance": Decimal("1.005")}),
            FieldUpdate(crm_id="4876876000000999999", values={"Prepaid_Tier": "Gold"})
        ])
        assert [r.ok for r in results] == [True, False, False, False]
        assert results[1].field == "Prepaid_Balanse" and "no such field" in results[1].message
        assert results[2].field == "Prepaid_Balance" and "decimal places" in results[2].message
        assert results[3].code == "INVALID_DATA"
        assert sb.org.modules["Accounts"].records[ids[0]]["Prepaid_Balance"] == Decimal("950.00")
        assert sb.app.records.automation_runs == 0
        tier = next(f for f in adapter.describe("Accounts") if f.api_name == "Prepaid_Tier")
        assert "Platinum" in tier.picklist_values and "-None-" not in tier.picklist_values


def test_tasks_idempotent_under_lost_responses() -> None:
    with ZohoSandbox(seed=15) as sb:
        adapter = ZohoAdapter(sandbox_client(sb))
        accounts = list(sb.org.modules["Accounts"].records.values())[:4]
        requests_ = [
            TaskRequest(marker=f"ps:low_balance:zoho:Accounts:{a['id']}", subject="Prepaid balance low",
                        related_module="Accounts", related_id=a["id"], due_date=datetime(2026, 1, 7).date(),
                        priority="High") for a in accounts
        ]
        sb.config.fail_rate = 1.0  # every write is processed but its answer is lost (or refused first)
        sb.app._faults.seed(3)
        with pytest.raises(Exception):
            adapter.create_tasks(requests_)
        sb.config.fail_rate = 0.0
        refs = adapter.create_tasks(requests_)
        again = adapter.create_tasks(requests_)
        tasks = list(sb.org.modules["Tasks"].records.values())
        assert len(tasks) == 4 and [r.task_id for r in refs] == [r.task_id for r in again]
        for task, account in zip(sorted(tasks, key=lambda t: t["Prepaid_Sync_Marker"]),
                                 sorted(accounts, key=lambda a: f"ps:low_balance:zoho:Accounts:{a['id']}")):
            assert task["Owner"]["id"] == account["Owner"]["id"]  # owned by the record's owner
            assert task["What_Id"]["id"] == account["id"] and task["$se_module"] == "Accounts"
        adapter.close_task(refs[0].task_id)
        found = {r.marker: r for r in adapter.find_tasks([r.marker for r in refs])}
        assert not found[refs[0].marker].open and found[refs[1].marker].open
        reopened = adapter.create_tasks(requests_[:1])  # the flag is raised again: a new open task
        assert reopened[0].task_id != refs[0].task_id and len(sb.org.modules["Tasks"].records) == 5


def test_quota_exhaustion_stops_the_run() -> None:
    with ZohoSandbox(seed=900, daily_credits=3) as sb:
        adapter = ZohoAdapter(sandbox_client(sb))
        with pytest.raises(QuotaExhausted):
            list(adapter.stream(default_specs()[Entity.CUSTOMER]))
        assert sb.app.credits_used() == 3


def test_bad_record_callback_and_currency_default() -> None:
    with ZohoSandbox(seed=400) as sb:
        seen: list[RecordRejected] = []
        adapter = ZohoAdapter(sandbox_client(sb), on_reject=seen.append, default_currency="USD")
        contracts = list(adapter.stream(default_specs()[Entity.CONTRACT]))
        assert seen and all(str(b).startswith(b.record) and b.field in str(b) for b in seen)
        assert len(contracts) + len(seen) == len(sb.org.modules["Deals"].records)
