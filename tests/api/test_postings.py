"""Issue 15.3: postings over HTTP. Money as decimal strings; the Idempotency-Key is required and permanent:
a replay answers what the first answered (`Idempotent-Replayed: true`), another body is a 409; rules and
bad input answer RFC 9457 problems naming the type and the field; oversized bodies are 413 unread."""

from __future__ import annotations

import socket

import pytest

from api_support import PROBLEM, Api

P = "/api/v1/problems/"


def deposit(api: Api, customer: str, amount: str, key: str, **extra: object) -> dict[str, object]:
    r = api.post(f"/customers/{customer}/deposits", {"amount": amount, "currency": "CNY", **extra}, idem=key)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_deposit_consume_refund_answer_the_entry_and_the_balance_after(api: Api) -> None:
    d = deposit(api, "c1", "100.00", "d1", expires_at="2999-12-31", priority=10, source="shop:o-1")
    assert d["balance"] == "100.00" and d["entries"][0]["kind"] == "deposit" and d["entries"][0]["lot_id"]
    r = api.post("/customers/c1/consumptions", {"amount": "30.50", "currency": "CNY", "memo": "usage"},
                 idem="u1")
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    body = r.json()
    assert (body["op"], body["amount"], body["balance"], body["idempotency_key"]) == ("consume", "30.50",
                                                                                     "69.50", "u1")
    assert body["entries"][0]["amount"] == "-30.50" and body["entries"][0]["balance_after"] == "69.50"
    r = api.post("/customers/c1/refunds", {"amount": "9.50", "currency": "CNY"}, idem="rf1")
    assert r.status_code == 201 and r.json()["payout"] == "9.50" and r.json()["balance"] == "60.00"
    b = api.get("/customers/c1/balance", currency="CNY").json()
    assert (b["balance"], b["available"], b["customer"], b["currency"]) == ("60.00", "60.00", "c1", "CNY")


def test_a_replay_answers_the_first_answer_and_another_body_is_409(api: Api) -> None:
    deposit(api, "c1", "100.00", "d1")
    first = api.post("/customers/c1/consumptions", {"amount": "10.00", "currency": "CNY"}, idem="k")
    again = api.post("/customers/c1/consumptions", {"amount": "10.00", "currency": "CNY", "memo": "retry"},
                     idem="k")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    for other in ({"amount": "10.01", "currency": "CNY"}, {"amount": "10.00", "currency": "USD"}):
        r = api.post("/customers/c1/consumptions", other, idem="k")
        assert r.status_code == 409 and r.json()["type"] == P + "idempotency-conflict"
    assert api.post("/customers/c2/consumptions", {"amount": "10.00", "currency": "CNY"},
                    idem="k").status_code == 409  # another customer
    assert api.post("/customers/c1/deposits", {"amount": "10.00", "currency": "CNY"},
                    idem="k").status_code == 409  # another operation
    assert api.get("/customers/c1/balance", currency="CNY").json()["balance"] == "90.00"


def test_insufficient_balance_is_a_422_problem_with_its_own_type(api: Api) -> None:
    deposit(api, "c1", "5.00", "d1")
    r = api.post("/customers/c1/consumptions", {"amount": "5.01", "currency": "CNY"}, idem="u1")
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert doc["type"] == P + "insufficient-balance" and doc["status"] == 422
    assert "5.00 CNY available" in doc["detail"] and doc["instance"] == "/api/v1/customers/c1/consumptions"
    described = api.session.get(api.url + doc["type"], timeout=60).json()
    assert described["status"] == 422 and described["title"] == doc["title"]


@pytest.mark.parametrize(("body", "field"), [
    ({"amount": 10, "currency": "CNY"}, "amount"),
    ({"amount": 10.5, "currency": "CNY"}, "amount"),
    ({"amount": "10,00", "currency": "CNY"}, "amount"),
    ({"amount": "10.001", "currency": "CNY"}, "amount"),
    ({"amount": "-1", "currency": "CNY"}, "amount"),
    ({"amount": "1", "currency": "XXX"}, "currency"),
    ({"currency": "CNY"}, "amount"),
    ({"amount": "1", "currency": "CNY", "expires_at": "2999-01-01"}, "expires_at"),
    ({"amount": "1", "currency": "CNY", "effective_at": "yesterday"}, "effective_at"),
])
def test_invalid_input_is_a_422_naming_the_field(sqlite_api: Api, body: dict[str, object],
                                                 field: str) -> None:
    deposit(sqlite_api, "c1", "100.00", "d1")
    r = sqlite_api.post("/customers/c1/consumptions", body, idem="x")
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["type"] == P + "invalid-input" and doc["field"] == field, doc
    assert sqlite_api.get("/customers/c1/balance", currency="CNY").json()["balance"] == "100.00"


def test_idempotency_key_missing_or_unusable(sqlite_api: Api) -> None:
    body = {"amount": "1.00", "currency": "CNY"}
    r = sqlite_api.post("/customers/c1/deposits", body)
    assert r.status_code == 400 and r.json()["type"] == P + "idempotency-key-required"
    assert sqlite_api.post("/customers/c1/deposits", body, idem="").status_code == 400
    r = sqlite_api.post("/customers/c1/deposits", body, idem="k" * 201)
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"


def test_a_body_that_is_not_json_is_400(sqlite_api: Api) -> None:
    r = sqlite_api.session.post(f"{sqlite_api.url}/api/v1/customers/c1/deposits", data=b"{not json",
                                headers={**sqlite_api.headers(idem="k"), "Content-Type": "application/json"},
                                timeout=60)
    assert r.status_code == 400 and r.json()["type"] == P + "bad-request"


def test_a_body_over_the_limit_is_413_before_it_is_read(sqlite_api: Api) -> None:
    big = b'{"amount": "1.00", "currency": "CNY", "memo": "' + b"x" * (1024 * 1024) + b'"}'
    r = sqlite_api.session.post(f"{sqlite_api.url}/api/v1/customers/c1/deposits", data=big,
                                headers={**sqlite_api.headers(idem="k"), "Content-Type": "application/json"},
                                timeout=60)
    assert r.status_code == 413 and r.json()["type"] == P + "payload-too-large"
    chunks = (b"x" * 65536 for _ in range(40))  # no Content-Length: counted as it streams in
    r = sqlite_api.session.post(f"{sqlite_api.url}/api/v1/customers/c1/deposits", data=chunks,
                                headers={**sqlite_api.headers(idem="k"), "Content-Type": "application/json"},
                                timeout=60)
    assert r.status_code == 413
    assert sqlite_api.get("/customers/c1/balance", currency="CNY").status_code == 404  # nothing posted


def test_a_declared_length_over_the_limit_is_refused_without_sending_the_body(sqlite_api: Api) -> None:
    host, port = sqlite_api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"POST /api/v1/customers/c1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  f"\r\nContent-Length: {50 * 1024 * 1024}\r\nIdempotency-Key: k\r\n"
                  f"Authorization: Bearer {sqlite_api.write_key}\r\n\r\n".encode())
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")
