"""The engine reaches a CRM only through the adapter interface: field types, field creation and refused
records are the adapter's, and the streams table is the one list of what a run reads."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from helpers import fxiaoke_engine, zoho_engine

from connector.adapters.base import EntitySpec, FieldInfo
from connector.adapters.fxiaoke.adapter import DATA_TYPES as FXIAOKE_TYPES
from connector.adapters.zoho.adapter import DATA_TYPES as ZOHO_TYPES
from connector.domain import BY_ENTITY, STREAMS, Entity
from connector.errors import RecordRejected
from connector.mapping import parse_mapping
from connector.mapping.loader import DEFAULTS
from connector.mapping.models import FieldType, Mapping
from connector.sync.checks import check_online
from connector.sync.dryrun import DryRunAdapter
from connector.sync.pull import specs


@pytest.mark.parametrize("table", [ZOHO_TYPES, FXIAOKE_TYPES], ids=["zoho", "fxiaoke"])
def test_each_adapter_says_which_of_its_types_hold_every_mapping_type(
        table: dict[str, frozenset[str]]) -> None:
    assert set(table) == set(typing.get_args(FieldType))
    assert all(table.values())


def test_a_field_fits_by_the_adapters_own_table(tmp_path: Path) -> None:
    zoho, _sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=3)
    fx, _app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=3)
    number = FieldInfo(api_name="amount", data_type="number")
    double = FieldInfo(api_name="Amount", data_type="double")
    assert fx.adapter.can_hold("money", number) and not fx.adapter.can_hold("money", double)
    assert zoho.adapter.can_hold("money", double) and not zoho.adapter.can_hold("money", number)


def _with_owned_field(crm: str, field: dict[str, object]) -> Mapping:
    data = yaml.safe_load((DEFAULTS / f"{crm}.yaml").read_text(encoding="utf-8"))
    data["write_back"]["points"] = field
    return parse_mapping(data)


def test_zoho_creates_a_missing_owned_picklist_with_its_values(tmp_path: Path) -> None:
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=3)
    mapping = _with_owned_field("zoho", {"crm": "Prepaid_Points", "type": "picklist", "owner": "connector",
                                         "values": {"low": "Low", "high": "High"}})
    assert [p["path"] for p in check_online(eng.adapter, mapping)] == ["write_back.points.crm"]
    assert check_online(eng.adapter, mapping, create_fields=True) == []
    eng.adapter.forget_metadata()
    made = {f.api_name: f for f in eng.adapter.describe(mapping.customers.module)}["Prepaid_Points"]
    assert made.data_type == "picklist" and set(made.picklist_values) == {"Low", "High"}


def test_fxiaoke_reports_a_missing_owned_field_for_its_setup_ui(tmp_path: Path) -> None:
    eng, _app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=3)
    mapping = _with_owned_field("fxiaoke", {"crm": "points__c", "type": "decimal", "owner": "connector"})
    problems = check_online(eng.adapter, mapping, create_fields=True)
    assert problems == [{
        "path": "write_back.points", "reason": "points__c is missing and fxiaoke fields cannot "
        "be created by API; create it in the CRM's setup"
    }]


def test_a_dry_run_lends_the_hook_for_its_reads_only(tmp_path: Path) -> None:
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=3)
    real: list[RecordRejected] = []
    planned: list[RecordRejected] = []
    eng.adapter.on_reject = real.append
    dry = DryRunAdapter(eng.adapter, eng.mapping)
    assert dry.on_reject == real.append  # the hook it starts with is the real adapter's
    dry.on_reject = planned.append
    misspelt = EntitySpec(entity=Entity.CUSTOMER, module="Accounts", fields={"name": "Acount_Name"})
    assert list(dry.stream(misspelt)) == []
    assert planned and not real
    assert all(r.record.startswith("zoho:Accounts:") and r.incomplete for r in planned)
    assert eng.adapter.on_reject == real.append


def test_the_mapping_sections_are_the_streams_in_their_order() -> None:
    assert [s.entity for s in STREAMS.values()] == list(Entity)
    assert all(BY_ENTITY[s.entity] is s for s in STREAMS.values())
    assert set(STREAMS) <= set(Mapping.model_fields)
    for crm in ("zoho", "fxiaoke"):
        mapping = parse_mapping(yaml.safe_load((DEFAULTS / f"{crm}.yaml").read_text(encoding="utf-8")))
        read = specs(mapping)
        assert list(read) == [s.name for s, _emap in mapping.sections()]
        assert all(read[name].entity is STREAMS[name].entity for name in read)
