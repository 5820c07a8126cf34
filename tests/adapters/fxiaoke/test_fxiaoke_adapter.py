"""FxiaokeAdapter over the in-process sandbox: mapping, incremental reads, deletions, writes, tasks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from fxiaoke_helpers import make_client

from connector.adapters.base import FieldUpdate, TaskRequest
from connector.adapters.fxiaoke import DEFAULT_SPECS, FxiaokeAdapter, FxiaokeTaskTarget
from connector.adapters.fxiaoke.client import from_epoch_ms
from connector.adapters.fxiaoke.sandbox import SandboxApp
from connector.domain import Contract, Customer, Deletion, Entity, Payment, PrepaymentBalance


def test_full_stream_maps_every_entity(adapter: FxiaokeAdapter, small_tenant: SandboxApp) -> None:
    customers = list(adapter.stream(DEFAULT_SPECS[Entity.CUSTOMER]))
    assert len(customers) == 120 and all(isinstance(c, Customer) for c in customers)
    assert len({c.crm_id for c in customers}) == 120
    contracts = [c for c in adapter.stream(DEFAULT_SPECS[Entity.CONTRACT]) if isinstance(c, Contract)]
    assert contracts and all(isinstance(c.prepay_amount, Decimal) for c in contracts)
    sample = contracts[0]
    raw = small_tenant.store.get("prepay_contract__c", sample.crm_id)
    assert sample.prepay_amount == Decimal(
        raw["prepay_amount__c"]) and sample.customer_id == raw["account_id__c"]
    assert isinstance(sample.valid_from, date) and sample.refund_policy in ("option1", "9dKe2", "mQ7sv")
    balances = list(adapter.stream(DEFAULT_SPECS[Entity.PREPAYMENT]))
    assert balances and all(isinstance(b, PrepaymentBalance) for b in balances)


def test_bad_payments_are_reported_and_the_rest_goes_on(adapter: FxiaokeAdapter,
                                                        small_tenant: SandboxApp) -> None:
    out = list(adapter.stream(DEFAULT_SPECS[Entity.PAYMENT]))
    payments = [p for p in out if isinstance(p, Payment)]
    deletions = [d for d in out if isinstance(d, Deletion)]
    kinds = small_tenant.anomalies.by_kind
    bad = set(kinds["negative_payment"]) | set(kinds["zero_payment"])
    assert {r.crm_id for r in adapter.rejected} == bad
    assert all(r.field == "payment_amount" and r.module == "PaymentObj" for r in adapter.rejected)
    assert {d.crm_id for d in deletions} == set(kinds["invalidated_payment"])
    assert len(payments) + len(deletions) + len(bad) == len(small_tenant.store.tables["PaymentObj"].rows)


def test_incremental_returns_exactly_what_changed(adapter: FxiaokeAdapter, small_tenant: SandboxApp) -> None:
    spec = DEFAULT_SPECS[Entity.CUSTOMER]
    full = list(adapter.stream(spec))
    watermark = max(r.modified_at for r in full)  # type: ignore[union-attr]
    small_tenant.clock.advance(5)
    changed = [full[3].crm_id, full[77].crm_id]
    adapter.write_fields(
        "AccountObj",
        [FieldUpdate(crm_id=cid, values={"prepaid_balance__c": Decimal("10.00")}) for cid in changed])
    adapter.client.invalid("AccountObj", full[50].crm_id)
    since = watermark + timedelta(milliseconds=1)
    delta = list(adapter.stream(spec, since=since, overlap=timedelta(seconds=0)))
    assert sorted(r.crm_id for r in delta if isinstance(r, Customer)) == sorted(changed)
    assert [d.crm_id for d in delta if isinstance(d, Deletion)] == [full[50].crm_id]
    # an overlap window re-reads the boundary, still without repeating a record within the call
    overlapped = list(adapter.stream(spec, since=since, overlap=timedelta(days=400)))
    assert len(overlapped) == 120 and len({r.crm_id for r in overlapped}) == 120


def test_write_fields_reports_each_record(adapter: FxiaokeAdapter, small_tenant: SandboxApp) -> None:
    ids = list(small_tenant.store.tables["AccountObj"].rows)[:3]
    results = adapter.write_fields("AccountObj", [
        FieldUpdate(crm_id=ids[0],
                    values={"prepaid_balance__c": Decimal("1234.50"), "prepaid_tier__c": "Lw2xR"}),
        FieldUpdate(crm_id=ids[1], values={"prepaid_tier__c": "gold"}),
        FieldUpdate(crm_id="000000000000000000000000", values={"prepaid_balance__c": Decimal("1")}),
        FieldUpdate(crm_id=ids[2], values={"prepaid_balance__c": 1.5}),
    ])
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[1].code == "32000" and "prepaid_tier__c" in results[1].message
    assert results[3].field == "prepaid_balance__c" and "float" in results[3].message
    assert small_tenant.store.get("AccountObj", ids[0])["prepaid_balance__c"] == "1234.50"
    assert small_tenant.store.get("AccountObj", ids[0])["name"]  # partial: other fields untouched


def test_describe_gives_field_info(adapter: FxiaokeAdapter) -> None:
    info = {f.api_name: f for f in adapter.describe("AccountObj")}
    assert info["prepaid_tier__c"].picklist_values == ("tq8Ga", "Lw2xR", "p0Zk3")
    assert info["prepaid_balance__c"].custom and info["prepaid_balance__c"].decimal_places == 2
    assert info["last_modified_time"].read_only and info["account_no"].read_only and info["name"].required


def _task(app: SandboxApp, marker: str) -> TaskRequest:
    account = next(iter(app.store.tables["AccountObj"].rows.values()))
    return TaskRequest(marker=marker, subject="预付余额不足", description="余额低于提醒线",
                       due_date=date(2024, 7, 1), related_module="AccountObj", related_id=account["_id"])


def test_tasks_on_active_record_are_never_duplicated(adapter: FxiaokeAdapter,
                                                     small_tenant: SandboxApp) -> None:
    task = _task(small_tenant, "ps:low_balance:fxiaoke:AccountObj:1")
    first = adapter.create_tasks([task, task])
    assert first[0].task_id == first[1].task_id
    again = adapter.create_tasks([task])
    assert again[0].task_id == first[0].task_id
    rows = list(small_tenant.store.tables["ActiveRecordObj"].rows.values())
    assert len(rows) == 1
    account = small_tenant.store.get("AccountObj", task.related_id)
    assert rows[0]["owner"] == account["owner"] and rows[0]["account_id"] == task.related_id
    adapter.close_task(first[0].task_id)
    assert adapter.find_tasks([task.marker])[0].open is False
    reopened = adapter.create_tasks([task])  # the flag came back: a new task, the old one stays closed
    assert reopened[0].task_id != first[0].task_id and reopened[0].open


def test_task_owner_is_looked_up_once_per_related_record(adapter: FxiaokeAdapter,
                                                         small_tenant: SandboxApp) -> None:
    tasks = [_task(small_tenant, f"ps:overdue:fxiaoke:AccountObj:owner{i}") for i in range(3)]
    before = sum(n for path, n in adapter.usage().by_type.items() if path.endswith("/get"))
    refs = adapter.create_tasks(tasks)
    gets = sum(n for path, n in adapter.usage().by_type.items() if path.endswith("/get")) - before
    assert len({r.task_id for r in refs}) == 3 and gets == 1


def test_tasks_on_custom_object_use_status_codes(small_tenant: SandboxApp) -> None:
    adapter = FxiaokeAdapter(make_client(small_tenant),
                             task_target=FxiaokeTaskTarget.custom_object(notify=True))
    task = _task(small_tenant, "ps:overdue:fxiaoke:AccountObj:9")
    ref = adapter.create_tasks([task])[0]
    assert adapter.create_tasks([task])[0].task_id == ref.task_id
    row = small_tenant.store.get("followup_task__c", ref.task_id)
    assert row["status__c"] == "a1Xo2" and row["marker__c"] == task.marker
    assert row["due_date__c"] == 1719763200000  # 2024-07-01 00:00 China time
    assert len(small_tenant.messages) == 1
    adapter.close_task(ref.task_id)
    assert small_tenant.store.get("followup_task__c", ref.task_id)["status__c"] == "k9Pq7"
    assert adapter.find_tasks([task.marker]) == [ref.model_copy(update={"open": False})]


def test_tasks_as_messages(small_tenant: SandboxApp) -> None:
    adapter = FxiaokeAdapter(make_client(small_tenant), task_target=FxiaokeTaskTarget(kind="message"))
    task = _task(small_tenant, "ps:overdue:fxiaoke:AccountObj:2")
    adapter.create_tasks([task])
    adapter.create_tasks([task])
    owner = small_tenant.store.get("AccountObj", task.related_id)["owner"]
    assert len(small_tenant.messages) == 1 and small_tenant.messages[0]["toUser"] == owner


def test_usage_counts_calls_and_token(adapter: FxiaokeAdapter) -> None:
    list(adapter.stream(DEFAULT_SPECS[Entity.CUSTOMER]))
    usage = adapter.usage()
    assert usage.by_type["token"] == 1 and usage.by_type["/cgi/crm/v2/data/query"] == 2
    # +1 since issue 13: customers are read with this run's owner names (one /cgi/user/list call)
    assert usage.by_type["/cgi/user/list"] == 1 and usage.calls == 4


def test_epoch_ms_round_trip() -> None:
    assert from_epoch_ms(1_704_038_400_000).isoformat() == "2023-12-31T16:00:00+00:00"


def test_orders_are_unaffected_by_other_tenants(sandbox_app: Callable[..., SandboxApp]) -> None:
    a = FxiaokeAdapter(make_client(sandbox_app(seed=7)))
    assert len(list(a.stream(DEFAULT_SPECS[Entity.CUSTOMER]))) == 7
