"""`sandbox serve --clock-offset`: the sandbox's clock (Date header, record times) runs off the machine's."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests


@pytest.mark.parametrize("crm", ["zoho", "fxiaoke"])
@pytest.mark.parametrize("offset", [-3600, 3600])
def test_served_sandbox_answers_with_its_shifted_clock(crm: str, offset: int) -> None:
    proc = subprocess.Popen([
        sys.executable, "-m", "connector", "sandbox", "serve", "--crm", crm, "--seed", "3", "--clock-offset",
        str(offset)
    ], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        if crm == "zoho":
            resp = requests.post(info["accounts_url"] + "/oauth/v2/token", timeout=10, data={
                "grant_type": "refresh_token", "client_id": info["client_id"],
                "client_secret": info["client_secret"], "refresh_token": info["refresh_token"]})
        else:
            resp = requests.post(
                info["base_url"] + "/cgi/corpAccessToken/get/V2", timeout=10, json={
                    "appId": info["app_id"], "appSecret": info["app_secret"],
                    "permanentCode": info["permanent_code"]
                })
        said = parsedate_to_datetime(resp.headers["Date"])
        expected = datetime.now(UTC) + timedelta(seconds=offset)
        assert abs(said - expected) < timedelta(seconds=30), (said, expected)
        assert resp.headers["Date"].count("GMT") == 1 and list(resp.headers).count("Date") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
