"""Zoho's official Node SDK for CRM v8 (@zohocrm/nodejs-sdk-8.0), unchanged, against the loopback sandbox.

The SDK builds its token refresh as multipart/form-data; the script in tests/node refreshes, reads field
metadata, lists Accounts and follows a page token, then upserts. `.ci/run` installs the SDK (`npm ci` in
tests/node); under CI a missing node or SDK fails this test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from connector.adapters.zoho.sandbox import ZohoSandbox

NODE_DIR = Path(__file__).resolve().parents[2] / "node"
SDK = NODE_DIR / "node_modules" / "@zohocrm" / "nodejs-sdk-8.0" / "package.json"


def _node() -> str:
    node = shutil.which("node")
    missing = "node is not on PATH" if node is None else None
    if missing is None and not SDK.is_file():
        missing = f"the Zoho Node SDK is not installed (run `npm ci` in {NODE_DIR})"
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; CI must run the Node SDK check")
        pytest.skip(missing)
    assert node is not None
    return node


def test_node_sdk_v8_refreshes_then_reads_and_writes(tmp_path: Path) -> None:
    node = _node()
    with ZohoSandbox(seed=40) as sb:
        existing = next(iter(sb.org.modules["Accounts"].records.values()))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
               "EXISTING_LEDGER_ID": existing["Ledger_Customer_ID"]}
        done = subprocess.run([node, "zoho_sdk_flow.mjs", sb.api_domain, sb.config.client_id,
                               sb.config.client_secret, sb.config.refresh_token, str(tmp_path)],
                              cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert sb.app.stats["token_calls"] == 1  # one multipart refresh, then every call on its token
        assert out["fields"] == {"status": 200, "count": len(sb.org.modules["Accounts"].fields)}
        assert out["list"] == {"status": 200, "count": 20, "more": True, "next_status": 200, "next_count": 20,
                               "overlap": 0}
        assert out["upsert"] == {"status": 200, "results": [["success", "record updated"],
                                                            ["success", "record added"]]}
        assert sb.org.modules["Accounts"].records[existing["id"]]["Account_Name"] == "Node SDK Update Co"
