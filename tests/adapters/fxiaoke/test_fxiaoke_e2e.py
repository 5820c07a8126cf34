"""End to end over a real loopback HTTP server, with faults and throttling on; sleeps advance the sandbox
clock."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import requests
from fxiaoke_helpers import make_client

from connector.adapters.base import FieldUpdate, TaskRequest
from connector.adapters.fxiaoke import DEFAULT_SPECS, FxiaokeAdapter
from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox
from connector.domain import Customer, Deletion, Entity


def test_full_and_incremental_pull_with_faults_and_throttling(
        loopback: Callable[..., FxiaokeSandbox]) -> None:
    sandbox = loopback(seed=2500, fail_rate=0.2, rate_limit=10, token_ttl=900)
    app = sandbox.app
    client = make_client(app, sandbox.base_url, session=requests.Session(), pace=(10, 20.0), max_attempts=10)
    adapter = FxiaokeAdapter(client)
    spec = DEFAULT_SPECS[Entity.CUSTOMER]
    full = list(adapter.stream(spec))
    ids = [r.crm_id for r in full]
    assert len(ids) == 2500 and len(set(ids)) == 2500 and set(ids) == set(app.store.tables["AccountObj"].rows)
    assert app.counters.faults > 0 and client.stats.retries >= app.counters.faults
    assert client.stats.by_path[
        "/cgi/crm/v2/data/query"] - client.stats.retries == 26  # 25 full pages + 1 short
    assert client.paced_seconds > 0  # the client waited for the window instead of being throttled into errors

    watermark = max(r.modified_at for r in full)  # type: ignore[union-attr]
    app.clock.advance(8000)  # tokens expire meanwhile: the client refreshes on 20016 or by lifetime
    changed = ids[100:105]
    results = adapter.write_fields(
        "AccountObj",
        [FieldUpdate(crm_id=i, values={"prepaid_balance__c": Decimal("5.00")}) for i in changed])
    assert all(r.ok for r in results)
    adapter.client.invalid("AccountObj", ids[7])
    delta = list(adapter.stream(spec, since=watermark + timedelta(milliseconds=1)))
    assert sorted(r.crm_id for r in delta if isinstance(r, Customer)) == sorted(changed)
    assert [d.crm_id for d in delta if isinstance(d, Deletion)] == [ids[7]]

    task = TaskRequest(marker="ps:low:fxiaoke:AccountObj:x", subject="余额不足", related_module="AccountObj",
                       related_id=ids[0])
    assert adapter.create_tasks([task])[0].task_id == adapter.create_tasks([task])[0].task_id
    assert len(app.store.tables["ActiveRecordObj"].rows) == 1


def test_serve_prints_one_json_line_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from connector.adapters.fxiaoke.sandbox import serve; serve(seed=3)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) >= {"base_url", "app_id", "app_secret", "permanent_code", "open_user_id"}
        grant = requests.post(
            f"{info['base_url']}/cgi/corpAccessToken/get/V2", timeout=5, json={
                "appId": info["app_id"], "appSecret": info["app_secret"],
                "permanentCode": info["permanent_code"]
            }).json()
        assert grant["errorCode"] == 0
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out == "" and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
