"""Admin-facing errors through the CLI: `init --sandbox` learns the credentials from the sandbox itself and
checks the URL; connection refused names the URL; a wrong secret fails the run (not a record) naming its
variable; masking hides secret values only; an error reason names its field once."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connector import redact
from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox, SandboxConfig
from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli import app

runner = CliRunner()
SECRET_VARS = ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN", "FXIAOKE_APP_ID",
               "FXIAOKE_APP_SECRET", "FXIAOKE_PERMANENT_CODE", "PREPAID_SYNC_DB", "PREPAID_SYNC_CONFIG")


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    saved = dict(os.environ)
    for var in SECRET_VARS:
        os.environ.pop(var, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def sandbox(crm: str, seed: int) -> Any:
    return ZohoSandbox(seed=seed) if crm == "zoho" else FxiaokeSandbox(config=SandboxConfig(seed=seed))


def url_of(sb: Any) -> str:
    return sb.api_domain if isinstance(sb, ZohoSandbox) else sb.base_url


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result


def set_in(path: Path, key: str, value: str) -> None:
    """Replace `key = ...` (a TOML or .env line) in `path`, or add it under the connection."""
    lines = path.read_text().splitlines()
    hit = [i for i, line in enumerate(lines) if line.split("=")[0].strip() == key]
    if hit:
        lines[hit[0]] = f"{key} = {value}" if path.suffix == ".toml" else f"{key}={value}"
    else:
        at = next(i for i, line in enumerate(lines)
                  if line.startswith("[connections.") and "secrets" not in line)
        lines.insert(at + 1, f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_init_takes_crm_and_credentials_from_the_sandbox(crm: str, tmp_path: Path) -> None:
    with sandbox(crm, 7) as sb:  # seed 7: Fxiaoke credentials derive from the seed
        res = invoke("init", "--sandbox", url_of(sb), "--dir", str(tmp_path))
        assert res.exit_code == 0, res.stdout + res.stderr
        cfg = tmp_path / "prepaid-sync.toml"
        assert f'crm = "{crm}"' in cfg.read_text()
        assert "Next:" in res.stdout and f"prepaid-sync sync run --dry-run --config {cfg}" in res.stdout
        assert f"prepaid-sync mappings check --online --config {cfg}" in res.stdout
        run = invoke("sync", "run", "--config", str(cfg), "--json")
        assert run.exit_code == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["status"] in ("ok", "partial") and json.loads(
            run.stdout)["deposits_posted"]


def test_init_checks_what_answers_at_the_url(tmp_path: Path) -> None:
    with FxiaokeSandbox(config=SandboxConfig(seed=3)) as fx, ZohoSandbox(seed=3) as zoho:
        res = invoke("init", "--crm", "zoho", "--sandbox", fx.base_url, "--dir", str(tmp_path))
        assert (res.exit_code == 2
                and f"--sandbox {fx.base_url} is a fxiaoke sandbox, not zoho; use --crm fxiaoke"
                in res.stderr)
        res = invoke("init", "--sandbox", zoho.api_domain + "/crm/v8", "--dir", str(tmp_path))
        assert (res.exit_code == 2
                and "does not answer as a prepaid-sync sandbox (GET /sandbox/credentials: HTTP 401)"
                in res.stderr)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    res = invoke("init", "--sandbox", f"http://127.0.0.1:{port}", "--dir", str(tmp_path))
    assert res.exit_code == 2
    assert f"http://127.0.0.1:{port} refused the connection: is the service running there?" in res.stderr
    assert "prepaid-sync sandbox serve" in res.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_connection_refused_names_the_url(crm: str, tmp_path: Path) -> None:
    with sandbox(crm, 5) as sb:
        url = url_of(sb)
        assert invoke("init", "--sandbox", url, "--dir", str(tmp_path)).exit_code == 0
    cfg = tmp_path / "prepaid-sync.toml"
    set_in(cfg, "retry_attempts", "1")
    res = invoke("sync", "run", "--config", str(cfg), "--json")
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and doc["status"] == "failed"
    assert f"{url} refused the connection: is the service running there?" in doc["reason"]
    assert doc["error_total"] == 0 and doc["errors"] == []


@pytest.mark.parametrize(("crm", "var"), [("zoho", "ZOHO_CLIENT_SECRET"), ("fxiaoke", "FXIAOKE_APP_SECRET")])
def test_a_wrong_secret_fails_the_run_naming_its_variable(crm: str, var: str, tmp_path: Path) -> None:
    with sandbox(crm, 5) as sb:
        assert invoke("init", "--sandbox", url_of(sb), "--dir", str(tmp_path)).exit_code == 0
        set_in(tmp_path / ".env", var, '"not-the-secret-at-all"')
        cfg = str(tmp_path / "prepaid-sync.toml")
        res = invoke("sync", "run", "--config", cfg, "--json")
        doc = json.loads(res.stdout)
        assert res.exit_code == 1 and doc["status"] == "failed"
        assert doc["error_total"] == 0 and doc["errors"] == []  # the run failed; no record did
        assert var in doc["reason"] and ".env beside the config" in doc["reason"]
        text = invoke("sync", "run", "--config", cfg)
        assert "why:" in text.stdout and var in text.stdout and "not-the-secret-at-all" not in text.stdout
        shown = invoke("runs", "show", str(doc["run_id"]), "--config", cfg).stdout
        assert var in " ".join(shown.split())


def test_masking_hides_secret_values_only(tmp_path: Path) -> None:
    with ZohoSandbox(seed=5) as sb:
        assert invoke("init", "--sandbox", sb.api_domain, "--dir", str(tmp_path)).exit_code == 0
        set_in(tmp_path / ".env", "ZOHO_CLIENT_SECRET", '"wrong-secret-value"')
        cfg = str(tmp_path / "prepaid-sync.toml")
        run_id = json.loads(invoke("sync", "run", "--config", cfg, "--json").stdout)["run_id"]
    doc = json.loads(invoke("runs", "show", str(run_id), "--config", cfg, "--json").stdout)
    assert "invalid_client_secret: Zoho token refresh failed" in doc["run"][
        "reason"]  # was "*** token refresh"
    assert "wrong-secret-value" not in json.dumps(doc)


@pytest.mark.parametrize(("text", "kept"), [
    ("zoho INVALID_TOKEN: invalid oauth token", "invalid oauth token"),
    ("zoho invalid_client_secret: Zoho token refresh failed", "Zoho token refresh failed"),
    ("zoho invalid_code: Zoho said no", "Zoho said no"),
    ("Authorization: Zoho-oauthtoken 1000.abc", "Authorization: Zoho-oauthtoken ***"),
])
def test_words_that_are_no_secret_stay(text: str, kept: str) -> None:
    assert kept in redact.text(text)


@pytest.mark.parametrize("text", [
    "client_secret=s3cr3t-value&code=s3cr3t-value",
    '{"refresh_token": "s3cr3t-value"}',
    "password=s3cr3t-value",
    "ZOHO_CLIENT_SECRET=s3cr3t-value",
    'FXIAOKE_APP_SECRET="s3cr3t-value"',
    "ZOHO_REFRESH_TOKEN: s3cr3t-value",
    "x-api-key: s3cr3t-value",
    "corpAccessToken=s3cr3t-value",
    '"appSecret":"s3cr3t-value"',
    "permanentCode: s3cr3t-value",
    "token: s3cr3t-value",
    "Bearer s3cr3t-value",
    "Authorization: Basic s3cr3t-value",
    "access_token=s3cr3t-value",
    "client_secret: s3cr3t-value",
])
def test_real_secrets_are_still_masked(text: str) -> None:
    assert "s3cr3t" not in redact.text(text)


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
def test_error_reasons_name_the_field_once(crm: str, tmp_path: Path) -> None:
    with sandbox(crm, 200) as sb:  # seed 200 has negative and zero payment amounts
        assert invoke("init", "--sandbox", url_of(sb), "--dir", str(tmp_path)).exit_code == 0
        doc = json.loads(
            invoke("sync", "run", "--config", str(tmp_path / "prepaid-sync.toml"), "--json").stdout)
    amount_errors = [
        e for e in doc["errors"] if "the amount must be" in e["reason"] or "must not be zero" in e["reason"]
    ]
    assert amount_errors
    for e in doc["errors"]:
        assert not e["reason"].lower().startswith((e["field"].lower() + ":", "amount:")), e


def test_cli_refusal_names_the_field_once(tmp_path: Path) -> None:
    res = invoke("--db", f"sqlite:///{tmp_path}/x.db", "ledger", "deposit", "acme", "0", "--currency", "CNY",
                 "--key", "k")
    assert (res.exit_code == 2 and "amount: '0' is refused: the amount must not be zero" in res.stderr
            and "amount: amount" not in res.stderr)
