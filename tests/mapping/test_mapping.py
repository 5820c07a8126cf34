"""Mapping files: shipped defaults match the adapters and sandboxes; bad files give precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connector.adapters.fxiaoke import DEFAULT_SPECS
from connector.adapters.zoho import default_specs
from connector.domain import Entity
from connector.errors import ConfigError
from connector.mapping import load_mapping, parse_mapping
from connector.mapping.loader import DEFAULTS
from connector.sync.checks import check_online
from connector.sync.pull import specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_repo_copies_equal_the_packaged_defaults(crm: str) -> None:
    assert (ROOT / "mappings" / f"{crm}.yaml").read_text() == (DEFAULTS / f"{crm}.yaml").read_text()


def test_defaults_match_the_adapters_specs() -> None:
    z = specs(load_mapping(DEFAULTS / "zoho.yaml"))
    for name, entity in (("customers", Entity.CUSTOMER), ("contracts", Entity.CONTRACT), ("payments",
                                                                                          Entity.PAYMENT)):
        assert z[name].module == default_specs()[entity].module
        assert z[name].fields == default_specs()[entity].fields
    f = specs(load_mapping(DEFAULTS / "fxiaoke.yaml"))
    for name, entity in (("contracts", Entity.CONTRACT), ("payments", Entity.PAYMENT)):
        assert f[name].module == DEFAULT_SPECS[entity].module
        assert f[name].fields == DEFAULT_SPECS[entity].fields


def _broken(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load((DEFAULTS / "zoho.yaml").read_text())
    edit(data)  # type: ignore[operator]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, where, hint", [
    (lambda d: d["write_back"].__setitem__("balanse", d["write_back"].pop("balance")), "write_back",
     "did you mean 'balance'"),
    (lambda d: d["customers"].__setitem__("modul", d["customers"].pop("module")), "customers.modul",
     "did you mean 'module'"),
    (lambda d: d["tasks"]["rules"][0].__setitem__("flag", "overdo"), "tasks.rules[0].flag",
     "did you mean 'overdue'"),
    (lambda d: d["tasks"]["rules"][1].__setitem__("subject", "{custmer} low"), "tasks.rules[1].subject",
     "did you mean 'customer'"),
    (lambda d: d["payments"]["fields"]["amount"].__setitem__("type", "mony"), "payments.fields.amount.type",
     "did you mean 'money'"),
    (lambda d: d["tiers"]["levels"][1]["min"].__setitem__("lifetime_prepay", "5"), "tiers.levels[1].min",
     "did you mean 'lifetime_prepaid'"),
    (lambda d: d["write_back"]["balance"].__setitem__("owner", "crm"), "write_back", "connector-owned"),
])
def test_errors_name_file_path_reason_and_suggest(tmp_path: Path, edit: object, where: str,
                                                  hint: str) -> None:
    path = _broken(tmp_path, edit)
    with pytest.raises(ConfigError) as exc:
        load_mapping(path)
    message = str(exc.value)
    assert str(path) in message and where in message and hint in message


def test_not_yaml_and_wrong_shape(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("crm: [zoho\n")
    with pytest.raises(ConfigError, match=r"x.yaml: line \d+ .*not valid YAML"):
        load_mapping(bad)
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_mapping(["a"], "list.yaml")


def test_online_check_passes_defaults_and_catches_drift() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "sync"))
    from helpers import zoho_engine

    eng, _sb = zoho_engine("sqlite:///:memory:", seed=5)
    assert check_online(eng.adapter, eng.mapping) == []
    data = yaml.safe_load((DEFAULTS / "zoho.yaml").read_text())
    data["write_back"]["tier"]["values"]["gold"] = "Golden"
    data["write_back"]["balance"]["crm"] = "Prepaid_Balanse"
    data["write_back"]["lifetime_prepaid"] = {
        "crm": "Prepaid_Lifetime", "type": "money", "owner": "connector"
    }
    problems = check_online(eng.adapter, parse_mapping(data))
    reasons = " | ".join(p["reason"] for p in problems)
    assert "'Golden' is not a value" in reasons and "did you mean 'Gold'" in reasons
    assert "no field 'Prepaid_Balanse'" in reasons and "did you mean 'Prepaid_Balance'" in reasons
    assert "no field 'Prepaid_Lifetime'" in reasons
    created = check_online(
        eng.adapter,
        parse_mapping({
            **data, "write_back": {
                **data["write_back"], "balance": {
                    "crm": "Prepaid_Balance", "type": "money", "owner": "connector"
                }, "tier": {
                    **data["write_back"]["tier"], "values": {
                        "bronze": "Bronze", "silver": "Silver", "gold": "Gold", "platinum": "Platinum"
                    }
                }
            }
        }), create_fields=True)
    assert created == []
    assert check_online(eng.adapter, eng.mapping) == []



def test_a_business_match_key_is_refused_rather_than_ignored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from connector.errors import ConfigError
    from connector.mapping import load_mapping
    from connector.mapping.loader import default_mapping_path

    text = default_mapping_path("zoho").read_text(encoding="utf-8")
    text = text.replace("match_key: id", "match_key: Account_Number", 1)
    path = tmp_path / "zoho.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
            ConfigError, match=r"customers\.match_key: only the zoho record id \('id'\) is supported, "
            r"not 'Account_Number'"):
        load_mapping(path)
