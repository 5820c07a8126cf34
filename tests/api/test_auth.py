"""Issue 15.2: API keys. None, unknown or revoked: 401; a read key posting money: 403; the key is never in
a log line, a problem body or `apikey list`; only its hash is stored; the last use is kept cheaply."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from connector import redact
from connector.api.keys import KeyStore
from connector.api.tables import api_keys
from connector.cli import app
from connector.db.engine import make_engine
from api_support import PROBLEM, Api, secret_of

BODY = {"amount": "1.00", "currency": "CNY"}


def test_no_key_unknown_key_and_malformed_header_are_401(sqlite_api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer ps_live_000000000000_" + "x" * 43},
                    {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        r = sqlite_api.session.get(f"{sqlite_api.url}/api/v1/customers/c1/balance",
                                   params={"currency": "CNY"}, headers=headers, timeout=60)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"] == "/api/v1/problems/unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_secret_with_a_real_key_id_is_401(sqlite_api: Api) -> None:
    forged = sqlite_api.write_key[:-4] + ("AAAA" if not sqlite_api.write_key.endswith("AAAA") else "BBBB")
    r = sqlite_api.post("/customers/c1/deposits", BODY, key=forged, idem="k1")
    assert r.status_code == 401


def test_a_read_key_may_read_but_not_post_money(sqlite_api: Api) -> None:
    assert sqlite_api.post("/customers/c1/deposits", BODY, idem="d1").status_code == 201
    r = sqlite_api.get("/customers/c1/balance", key=sqlite_api.read_key, currency="CNY")
    assert r.status_code == 200 and r.json()["balance"] == "1.00"
    for path in ("/customers/c1/consumptions", "/customers/c1/deposits", "/customers/c1/refunds"):
        r = sqlite_api.post(path, BODY, key=sqlite_api.read_key, idem="r1")
        assert r.status_code == 403 and r.json()["type"] == "/api/v1/problems/forbidden"
    item = {**BODY, "customer": "c1", "idempotency_key": "b"}
    r = sqlite_api.post("/consumptions:batch", {"items": [item]}, key=sqlite_api.read_key)
    assert r.status_code == 403
    assert sqlite_api.ledger().balance("c1", "CNY")[0].balance == 1


def test_a_revoked_key_is_refused_from_the_next_request(sqlite_api: Api) -> None:
    assert sqlite_api.get("/customers", key=sqlite_api.read_key).status_code == 200
    KeyStore(make_engine(sqlite_api.db)).revoke("reader")
    r = sqlite_api.get("/customers", key=sqlite_api.read_key)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_the_key_never_appears_in_logs_problems_or_lists(sqlite_api: Api,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = sqlite_api.write_key
    secret = secret_of(key)
    answers = [sqlite_api.post("/customers/c1/deposits", BODY, idem="d1"),
               sqlite_api.post("/customers/c1/consumptions", {**BODY, "amount": "5.00"}, idem="c1"),
               sqlite_api.post("/customers/c1/consumptions", {**BODY, "amount": 5}, idem="c2"),
               sqlite_api.post("/customers/c1/consumptions", BODY),
               sqlite_api.get("/nowhere"),
               sqlite_api.post("/customers/c1/deposits", BODY, key=key + "x", idem="d2"),
               sqlite_api.post("/customers/c1/deposits", BODY, key=key.replace("ps_live_", "ps_test_"))]
    assert [a.status_code for a in answers] == [201, 422, 422, 400, 404, 401, 401]
    listed = CliRunner().invoke(app, ["--db", sqlite_api.db, "apikey", "list", "--json"])
    assert listed.exit_code == 0 and secret not in listed.stdout
    assert any(r.name.startswith("uvicorn") for r in caplog.records)  # the server's own lines were seen
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records)
    assert secret not in logged
    assert all(secret not in a.text and secret not in str(a.headers) for a in answers)


def test_the_one_sanitizer_masks_a_key_wherever_it_is_written() -> None:
    key = "ps_live_0123456789ab_" + "Zx-_9" * 9
    for line in (f"Authorization: Bearer {key}", f"the key {key} leaked", f'{{"api_key": "{key}"}}'):
        masked = redact.text(line)
        assert key[len("ps_live_0123456789ab_"):] not in masked, masked


def test_only_a_hash_is_stored_and_last_use_is_written_at_most_once_a_minute(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    now = [KeyStore(engine).clock()]
    store = KeyStore(engine, clock=lambda: now[0])
    record, key = store.create("billing", "write")
    secret = secret_of(key)
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).one()
    assert secret not in " ".join(str(v) for v in row) and len(row.secret_hash) == 64
    assert store.verify(key) is not None
    first = store.list()[0].last_used_at
    assert first == now[0]
    now[0] += timedelta(seconds=30)
    assert store.verify(key) is not None and store.list()[0].last_used_at == first  # no write
    now[0] += timedelta(seconds=31)
    assert store.verify(key) is not None and store.list()[0].last_used_at == now[0]
    assert repr(record).count(secret) == 0 and secret not in json.dumps(record.to_dict())


def test_apikey_cli_create_prints_the_key_once_list_and_revoke(sqlite_url: str) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["--db", sqlite_url, "apikey", "create", "billing", "--scope", "write"])
    assert made.exit_code == 0, made.stdout
    key = made.stdout.strip().splitlines()[-1]
    assert KeyStore(make_engine(sqlite_url)).verify(key) is not None
    again = runner.invoke(app, ["--db", sqlite_url, "apikey", "create", "billing", "--scope", "read"])
    assert again.exit_code == 2 and "exists already" in again.stderr
    bad = runner.invoke(app, ["--db", sqlite_url, "apikey", "create", "x", "--scope", "admin"])
    assert bad.exit_code == 2
    listed = json.loads(runner.invoke(app, ["--db", sqlite_url, "apikey", "list", "--json"]).stdout)
    assert [k["name"] for k in listed] == ["billing"] and listed[0]["revoked_at"] is None
    assert secret_of(key) not in json.dumps(listed)
    assert runner.invoke(app, ["--db", sqlite_url, "apikey", "revoke", "billing"]).exit_code == 0
    assert KeyStore(make_engine(sqlite_url)).verify(key) is None
    assert runner.invoke(app, ["--db", sqlite_url, "apikey", "revoke", "nobody"]).exit_code == 2
