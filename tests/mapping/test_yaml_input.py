"""Hostile mapping files: deep nesting and duplicate keys are refused with a clear ConfigError (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS
from connector.mapping.yaml_input import MAX_DEPTH


@pytest.mark.parametrize("text", [
    "crm: zoho\ncustomers: " + "[" * 5000 + "]" * 5000 + "\n",  # flow style
    "crm: zoho\ncustomers: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "crm: zoho\n" + "".join(" " * i + f"k{i}:\n" for i in range(5000)) + " " * 5000 + "v: 1\n",  # block style
], ids=["flow-sequences", "flow-mappings", "block-mappings"])
def test_a_mapping_nested_5000_levels_is_a_config_error_not_a_recursion_error(tmp_path: Path,
                                                                              text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_mapping(path)
    assert str(path) in str(exc.value) and f"nested more than {MAX_DEPTH} levels" in str(exc.value)
    assert "RecursionError" not in str(exc.value) and ": line " in str(exc.value)


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("crm: zoho\nextra: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as exc:  # read, then refused by the schema, not by the depth limit
        load_mapping(path)
    assert "nested" not in str(exc.value) and "unknown key 'extra'" in str(exc.value)


def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    text = (DEFAULTS / "zoho.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("amount:")) + 1
    # a second `amount:` a few lines further down in payments.fields (last-wins would silently take it)
    at = first + 2
    lines.insert(at, "    amount:      {crm: Amount_Typo, type: money}")
    path = tmp_path / "dup.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_mapping(path)
    message = str(exc.value)
    assert f"{path}: payments.fields: duplicate key 'amount'" in message
    assert f"line {first}" in message and f"line {at + 1}" in message
    assert exc.value.exit_code == 2


def test_duplicate_top_level_key_and_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "top.yaml"
    path.write_text("crm: zoho\nversion: 1\ncrm: fxiaoke\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duplicate key 'crm' on line 3 \(first on line 1\)"):
        load_mapping(path)
    # a YAML merge key is not a duplicate: the mapping's own keys override the merged ones, as YAML says
    merged = tmp_path / "merge.yaml"
    text = (DEFAULTS / "zoho.yaml").read_text(encoding="utf-8")
    text = text.replace("  balance:       {crm: Prepaid_Balance, type: money, owner: connector}",
                        "  balance: &money_out {crm: Prepaid_Balance, type: money, owner: connector}")
    text = text.replace("  available:     {crm: Prepaid_Available, type: money, owner: connector}",
                        "  available: {<<: *money_out, crm: Prepaid_Available}")
    merged.write_text(text, encoding="utf-8")
    assert load_mapping(merged).write_back["available"].crm == "Prepaid_Available"


def test_cli_refuses_them_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("crm: zoho\ncustomers: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["mappings", "check", "--mapping", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert "nested more than" in result.output


def test_a_config_file_nested_5000_levels_is_a_config_error(tmp_path: Path) -> None:
    from connector.config import load_settings

    path = tmp_path / "prepaid-sync.toml"
    path.write_text("database_url = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path)
