"""Owners by name: the adapter reads Fxiaoke's employee directory once per run; reports and tasks show
names."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fxiaoke_helpers import make_client

from connector.adapters.fxiaoke import DEFAULT_SPECS, FxiaokeAdapter
from connector.adapters.fxiaoke.sandbox import SandboxApp
from connector.adapters.fxiaoke.sandbox.app import Reply
from connector.domain import Customer, Entity
from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS
from connector.reports import build_report
from connector.reports.model import NONE
from connector.reports.sync_attributes import SyncAttributes

sys.path.insert(0, str(Path(__file__).parents[2] / "sync"))
from helpers import fxiaoke_engine  # noqa: E402

CUSTOMERS = DEFAULT_SPECS[Entity.CUSTOMER]


def customers(adapter: FxiaokeAdapter) -> list[Customer]:
    return [r for r in adapter.stream(CUSTOMERS) if isinstance(r, Customer)]


def test_customers_carry_owner_names_from_one_directory_read_per_run(small_tenant: SandboxApp) -> None:
    adapter = FxiaokeAdapter(make_client(small_tenant))
    names = {e.open_user_id: e.name for e in small_tenant.staff}
    first = customers(adapter)
    assert first and all(c.owner_id in names and c.owner_name == names[c.owner_id] for c in first)
    customers(adapter)  # same run: the directory is not read again
    assert adapter.usage().by_type["/cgi/user/list"] == 1

    renamed = first[0].owner_id
    assert renamed is not None
    small_tenant.update_employee(renamed, name="张伟(华东)")
    adapter.forget_metadata()  # what the engine does when a run starts
    again = customers(adapter)
    assert {c.owner_name for c in again if c.owner_id == renamed} == {"张伟(华东)"}
    assert adapter.usage().by_type["/cgi/user/list"] == 2


@pytest.mark.parametrize("answer", [{"errorCode": 20014, "errorMessage": "无此操作的数据权限"},
                                    {"errorCode": 0, "errorMessage": "OK"}])  # refused; or no userList
def test_a_refused_directory_leaves_owner_ids_and_the_stream_goes_on(
        sandbox_app: Callable[..., SandboxApp], answer: dict[str, Any]) -> None:
    app = sandbox_app(seed=12)
    handle = app.handle

    def no_directory(path: str, headers: dict[str, str], raw: bytes, query: str = "") -> Reply:
        if path == "/cgi/user/list":
            return Reply(body={"traceId": "E-O.test", **answer})
        return handle(path, headers, raw, query)

    app.handle = no_directory  # type: ignore[method-assign]
    got = customers(FxiaokeAdapter(make_client(app)))
    assert len(got) == 12 and all(c.owner_id and c.owner_name is None for c in got)


def test_reports_and_task_texts_show_fxiaoke_owners_by_name(tmp_path: Path) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=60)
    yaml = (DEFAULTS / "fxiaoke.yaml").read_text(encoding="utf-8").replace('description: "',
                                                                           'description: "负责人 {owner}. ')
    (tmp_path / "fxiaoke.yaml").write_text(yaml, encoding="utf-8")
    eng.mapping = load_mapping(tmp_path / "fxiaoke.yaml")
    assert eng.run().status in ("ok", "partial")  # partial: the seed's deliberate anomalies
    names = {e.name for e in app.staff}

    info = SyncAttributes(eng.engine, "fx", eng.mapping)._load()
    assert info and {i.owner for i in info.values()} <= names  # names, never FSUID_ ids
    doc = build_report(eng.engine, eng.clock() + timedelta(days=1), attributes=SyncAttributes(
        eng.engine, "fx", eng.mapping)).to_dict()
    owners = {owner for by in doc["by_owner"].values() for owner in by} - {NONE}  # NONE: the orphan payment's
    assert len(owners) >= 2 and owners <= names

    tasks = list(app.store.table("followup_task__c").rows.values())
    # an `orphaned` task belongs to money whose customer is gone, so it has no owner to name
    owned = [t for t in tasks if "(no customer)" not in t["description__c"] + t.get("name", "")]
    assert owned and all(any(n in t["description__c"] for n in names) for t in owned)
    assert not any("FSUID_" in t["description__c"] for t in tasks)
