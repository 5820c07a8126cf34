"""Reports grouped by the sync engine's state (`SyncAttributes`, `report --connection`) after a real sync."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from connector.cli import app
from connector.compliance.rules import load_rules
from connector.config import load_settings
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS
from connector.mapping.models import FieldMap
from connector.reports import build_report
from connector.reports.model import NONE
from connector.reports.sync_attributes import SyncAttributes, for_connection
from connector.sync import tables as t

sys.path.insert(0, str(Path(__file__).parents[1] / "sync"))
from helpers import Clock, zoho_engine  # noqa: E402

runner = CliRunner()
PREFIX = "zoho:Accounts:"


@dataclass
class Synced:
    """A ledger database after real syncs against the Zoho sandbox."""

    url: str
    engine: Any
    sb: Any
    clock: Clock


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    """Full sync, a payment edit, a second sync, then 20 days later a third (the event flag clears)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sync')}/ledger.db"
    clock = Clock()
    eng, sb = zoho_engine(url, seed=40, clock=clock)
    assert eng.run().status == "ok"
    pays = sb.org.modules["Prepaid_Payments"]
    edited = next(r for r in pays.records.values()
                  if (r.get("Account") or {}).get("id") and r.get("Currency"))
    clock.advance(minutes=5)
    sb.org.update(pays, edited["id"], {"Amount": Decimal(str(edited["Amount"])) + 7})
    clock.advance(minutes=5)
    assert eng.run().status == "ok"
    clock.advance(days=20)
    assert eng.run().status == "ok"
    return Synced(url, eng.engine, sb, clock)


def sync_state(engine: Any) -> tuple[dict[str, Any], dict[str, set[str]], list[tuple[str, str]]]:
    """Straight from the tables: customers by CRM id, open flag codes by ledger key, cleared (key, code)."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.customers).where(t.customers.c.connection == "zoho"))
        customers = {r.crm_id: r for r in rows}
        flags = conn.execute(select(t.flags).where(t.flags.c.connection == "zoho")).all()
    open_flags: dict[str, set[str]] = defaultdict(set)
    for f in flags:
        if f.cleared_at is None:
            open_flags[f.customer_id].add(f.code)
    cleared = [(f.customer_id, f.code) for f in flags if f.cleared_at is not None]
    return customers, open_flags, cleared


def expected_groups(synced: Synced) -> dict[str, Any]:
    """By-tier, by-owner and by-flag groups (customers, liability) from the ledger and the sync tables."""
    customers, open_flags, _ = sync_state(synced.engine)
    tiers: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    owners: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    flags: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for view in Ledger(synced.engine).accounts():
        assert view.customer.startswith(PREFIX)
        row = customers[view.customer.removeprefix(PREFIX)]
        held = max(view.balance, Decimal(0))
        tiers[view.currency][row.tier or NONE].append(held)
        owners[view.currency][row.owner_name or row.owner_id or NONE].append(held)
        for code in open_flags.get(view.customer, ()):
            flags[code][view.currency].append(held)

    def doc(data: dict[str, dict[str, list[Decimal]]]) -> dict[str, Any]:
        return {a: {b: {"customers": len(v), "liability": str(sum(v, Decimal(0)))} for b, v in by.items()}
                for a, by in data.items()}
    return {"by_tier": doc(tiers), "by_owner": doc(owners), "by_flag": doc(flags)}


def normalized(groups: dict[str, Any]) -> dict[str, Any]:
    """Liability strings as Decimals, so 10.0 and 10.00 compare equal only when the amounts are."""
    return {a: {b: {"customers": g["customers"], "liability": Decimal(g["liability"])} for b, g in by.items()}
            for a, by in groups.items()}


def write_config(folder: Path, url: str, *, compliance: str = "") -> Path:
    """A prepaid-sync.toml with the `zoho` connection on `url`, and optionally a [compliance] table."""
    cfg = folder / "prepaid-sync.toml"
    cfg.write_text(f'database_url = "{url}"\n\n[connections.zoho]\ncrm = "zoho"\n'
                   f'mapping = "{DEFAULTS / "zoho.yaml"}"\n' + compliance, encoding="utf-8")
    return cfg


def test_report_groups_match_the_sync_tables(synced: Synced) -> None:
    provider = for_connection("zoho", write_config(Path(synced.url.removeprefix("sqlite:///")).parent,
                                                   synced.url))
    as_of = synced.clock() + timedelta(days=1)
    doc = build_report(synced.engine, as_of, attributes=provider).to_dict()
    want = expected_groups(synced)
    assert doc["by_tier"] and doc["by_owner"] and doc["by_flag"]
    for section in ("by_tier", "by_owner", "by_flag"):
        assert normalized(doc[section]) == normalized(want[section]), section
    assert all(NONE not in by for by in doc["by_tier"].values())  # every ledger customer is a synced one
    assert len({tier for by in doc["by_tier"].values() for tier in by}) >= 2
    owners = {owner for by in doc["by_owner"].values() for owner in by}
    assert len(owners) >= 2
    assert not any(o.isdigit() for o in owners)  # the sandbox's Zoho users by name, not by id


def test_attributes_agree_with_the_crm_and_skip_cleared_flags(synced: Synced) -> None:
    provider = for_connection("zoho", write_config(Path(synced.url.removeprefix("sqlite:///")).parent,
                                                   synced.url))
    accounts = synced.sb.org.modules["Accounts"].records
    keys = [PREFIX + crm_id for crm_id in accounts]
    info = provider.lookup([*keys, "fxiaoke:AccountObj:1", "zoho:Deals:" + next(iter(accounts)), "acme"])
    assert set(info) == set(keys)  # other CRMs, modules and plain keys are left out
    tier_map = provider.mapping.write_back["tier"]
    for crm_id, record in accounts.items():
        got = info[PREFIX + crm_id]
        assert got.owner == record["Owner"]["name"] and got.name == record["Account_Name"]
        assert got.tier == tier_map.from_crm(record["Prepaid_Tier"])  # what the sync wrote back
        assert set(got.flags) == set(filter(None, record.get("Prepaid_Flags", "").split(",")))
    _, open_flags, cleared = sync_state(synced.engine)
    gone = [(key, code) for key, code in cleared if code not in open_flags.get(key, set())]
    assert any(code == "payment_changed" for _, code in gone)
    for key, code in gone:
        assert code not in info[key].flags


def test_report_connection_cli(synced: Synced, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, synced.url, compliance='\n[compliance]\ncustody_ratio = "0.25"\n')
    as_of = (synced.clock() + timedelta(days=1)).date().isoformat()
    res = runner.invoke(app, ["report", "--connection", "zoho", "--config", str(cfg), "--as-of", as_of,
                              "-f", "json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    doc = json.loads(res.stdout)
    want = expected_groups(synced)
    for section in ("by_tier", "by_owner", "by_flag"):
        assert normalized(doc[section]) == normalized(want[section]), section
    assert doc["rules"] == str(cfg)
    customers, _, _ = sync_state(synced.engine)
    key = next(c["customer"] for c in doc["customers"] if c["balance"] != "0.00")
    res = runner.invoke(app, ["statement", key, "--connection", "zoho", "--config", str(cfg), "-f", "json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert json.loads(res.stdout)["name"] == customers[key.removeprefix(PREFIX)].name


def test_report_connection_refusals(synced: Synced, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, synced.url)
    res = runner.invoke(app, ["report", "--connection", "zohoo", "--config", str(cfg)])
    assert res.exit_code == 2 and "'zohoo'" in res.stderr and "have zoho" in res.stderr
    attrs = tmp_path / "a.csv"
    attrs.write_text("customer,tier\nx,gold\n", encoding="utf-8")
    res = runner.invoke(app, ["report", "--connection", "zoho", "--attributes", str(attrs),
                              "--config", str(cfg)])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = runner.invoke(app, ["report", "--connection", "zoho", "--config", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "missing.toml" in res.stderr


def test_config_with_connections_and_compliance_loads_in_both_loaders(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/x.db", compliance=(
        '\n[compliance]\naccept_prepayments = false\nstop_reason = "audit"\ncustody_ratio = "0.25"\n'
        'real_name_threshold = { CNY = "20000" }\n'))
    loaded = load_settings(cfg)
    assert set(loaded.settings.connections) == {"zoho"}
    assert loaded.settings.compliance["custody_ratio"] == "0.25"
    rules = load_rules(cfg)
    assert not rules.accept_prepayments and rules.stop_reason == "audit"
    assert rules.ratio == Decimal("0.25") and rules.real_name_threshold == {"CNY": Decimal("20000")}
    typo = write_config(tmp_path, "sqlite://", compliance='\n[complianc]\nstop_reason = "x"\n')
    with pytest.raises(ConfigError, match="did you mean 'compliance'"):
        load_settings(typo)


def test_unsynced_connection_knows_nothing(tmp_path: Path) -> None:
    provider = for_connection("zoho", write_config(tmp_path, f"sqlite:///{tmp_path}/empty.db"))
    assert isinstance(provider, SyncAttributes)
    assert provider.lookup([PREFIX + "1"]) == {}


def test_kind_and_name_from_mapped_fields(tmp_path: Path) -> None:
    mapping = load_mapping(DEFAULTS / "zoho.yaml")
    kind = FieldMap(crm="Account_Type", type="picklist", values={"unit": "Company", "individual": "Person"})
    mapping = mapping.model_copy(
        update={"customers": mapping.customers.model_copy(update={"extra": {"kind": kind}})})
    engine = make_engine(f"sqlite:///{tmp_path}/k.db")
    rows = [("1", None, '{"Account_Name": "Ada", "Account_Type": "Person"}'),
            ("2", "Acme", '{"Account_Type": "Company"}'), ("3", None, '{"Account_Type": "Partner"}')]
    with engine.begin() as conn:
        conn.execute(t.customers.insert(), [{"connection": "z", "crm_id": c, "name": n, "fields": f}
                                            for c, n, f in rows])
    info = SyncAttributes(engine, "z", mapping).lookup([PREFIX + c for c, _, _ in rows])
    assert (info[PREFIX + "1"].name, info[PREFIX + "1"].kind) == ("Ada", "individual")
    assert (info[PREFIX + "2"].name, info[PREFIX + "2"].kind) == ("Acme", "unit")
    assert (info[PREFIX + "3"].name, info[PREFIX + "3"].kind) == (None, None)  # not a known kind
