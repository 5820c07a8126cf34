"""`mappings check --online`: a credential or connection failure is one line with the fix, not one per
field."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.adapters.fxiaoke.sandbox.app import SandboxConfig
from connector.adapters.fxiaoke.sandbox.server import FxiaokeSandbox
from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli import app

runner = CliRunner()
ENV = ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN", "FXIAOKE_APP_ID", "FXIAOKE_APP_SECRET",
       "FXIAOKE_PERMANENT_CODE")


def _init(tmp_path: Path, crm: str, url: str) -> Path:
    res = runner.invoke(app, ["init", "--crm", crm, "--sandbox", url, "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "prepaid-sync.toml"  # one attempt per call: no retry waits in the test
    assert "retry_attempts = 5\n" in cfg.read_text()
    cfg.write_text(cfg.read_text().replace("retry_attempts = 5\n", "retry_attempts = 1\n"))
    return cfg


def _wrong_secret(folder: Path, var: str) -> None:
    for name in ENV:  # read again from .env by the next command
        os.environ.pop(name, None)
    env = folder / ".env"
    lines = [f'{var}="not-the-secret"' if line.startswith(f"{var}=") else line
             for line in env.read_text().splitlines()]
    env.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_a_wrong_secret_is_one_line_naming_the_credentials_and_exit_2(tmp_path: Path, clean_env: None,
                                                                      crm: str) -> None:
    server = ZohoSandbox(seed=3) if crm == "zoho" else FxiaokeSandbox(config=SandboxConfig(seed=3))
    with server as sb:
        url = sb.api_domain if crm == "zoho" else sb.base_url
        cfg = _init(tmp_path, crm, url)
        ok = runner.invoke(app, ["mappings", "check", "--config", str(cfg), "--online"])
        assert ok.exit_code == 0, ok.output
        var = "ZOHO_CLIENT_SECRET" if crm == "zoho" else "FXIAOKE_APP_SECRET"
        _wrong_secret(tmp_path, var)
        res = runner.invoke(app, ["mappings", "check", "--config", str(cfg), "--online"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    text = " ".join(res.stderr.split())
    assert "has no field" not in text and "cannot be described" not in text
    assert text.startswith(f"error: cannot check the mapping of connection '{crm}' against the CRM")
    assert "refused the credentials" in text and var in text and str(tmp_path / ".env") in text
    assert "not-the-secret" not in text
    assert len(lines) <= 4  # one message (wrapped at the terminal width), not one per mapped field


def test_nothing_listening_is_one_line_naming_the_url(tmp_path: Path, clean_env: None) -> None:
    with ZohoSandbox(seed=3) as sb:
        cfg = _init(tmp_path, "zoho", sb.api_domain)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = cfg.read_text()
    old = sb.api_domain.rsplit(":", 1)[1]
    cfg.write_text(text.replace(f":{old}", f":{port}"))
    res = runner.invoke(app, ["mappings", "check", "--config", str(cfg), "--online"])
    assert res.exit_code == 1, res.output
    text = " ".join(res.stderr.split())
    assert "has no field" not in text and "cannot be described" not in text
    assert f"127.0.0.1:{port}" in text and "is the CRM (or the sandbox) running" in text
    assert text.count("error:") == 1


def test_a_module_that_does_not_exist_is_one_problem_not_one_per_field(tmp_path: Path,
                                                                       clean_env: None) -> None:
    with ZohoSandbox(seed=3) as sb:
        cfg = _init(tmp_path, "zoho", sb.api_domain)
        mapping = tmp_path / "mappings" / "zoho.yaml"
        mapping.write_text(mapping.read_text().replace("module: Prepaid_Payments", "module: Prepaid_Paymets"))
        res = runner.invoke(app, ["mappings", "check", "--config", str(cfg), "--online", "--json"])
    assert res.exit_code == 2, res.output
    problems = json.loads(res.stdout)["problems"]
    assert [p["path"] for p in problems] == ["payments.module"]
    assert "'Prepaid_Paymets' cannot be described" in problems[0]["reason"]
