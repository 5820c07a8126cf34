"""Issue 15.3: the batch endpoint (per-item results, one transaction), entries by cursor, customer search,
statements, the balance, and the generated documents."""

from __future__ import annotations

import json

from api_support import Api
from connector.sync import tables as t
from connector.db.engine import make_engine

P = "/api/v1/problems/"


def test_batch_answers_each_item_and_refusals_write_nothing(api: Api) -> None:
    api.ledger().deposit("c1", "10.00", "CNY", "seed")
    items = [{"customer": "c1", "amount": "4.00", "currency": "CNY", "idempotency_key": "b1"},
             {"customer": "c1", "amount": "7.00", "currency": "CNY", "idempotency_key": "b2"},  # too much
             {"customer": "c1", "amount": "6.00", "currency": "CNY", "idempotency_key": "b3"},
             {"customer": "c1", "amount": "1.00", "currency": "CNY", "idempotency_key": "b1"},  # b1 reused
             {"customer": "c1", "amount": "x", "currency": "CNY", "idempotency_key": "b4"},
             {"customer": "c1", "amount": "1.00", "currency": "CNY", "idempotency_key": ""}]
    r = api.post("/consumptions:batch", {"items": items})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["created"], doc["replayed"], doc["refused"]) == (2, 0, 4)
    got = [(x["index"], x["outcome"], x["status"], (x.get("problem") or {}).get("type"))
           for x in doc["results"]]
    assert got == [(0, "created", 201, None), (1, "refused", 422, P + "insufficient-balance"),
                   (2, "created", 201, None), (3, "refused", 409, P + "idempotency-conflict"),
                   (4, "refused", 422, P + "invalid-input"),
                   (5, "refused", 400, P + "idempotency-key-required")]
    assert doc["results"][2]["result"]["balance"] == "0.00"
    again = api.post("/consumptions:batch", {"items": items[:3]}).json()
    assert [x["outcome"] for x in again["results"]] == ["replayed", "refused", "replayed"]
    single = api.post("/customers/c1/consumptions", {"amount": "4.00", "currency": "CNY"}, idem="b1")
    assert single.status_code == 201 and single.headers["Idempotent-Replayed"] == "true"


def test_batch_size_is_bounded(sqlite_api: Api) -> None:
    item = {"customer": "c1", "amount": "1.00", "currency": "CNY"}
    r = sqlite_api.post("/consumptions:batch", {"items": [{**item, "idempotency_key": f"k{i}"}
                                                          for i in range(1001)]})
    assert r.status_code == 422 and r.json()["field"] == "items"
    assert sqlite_api.post("/consumptions:batch", {"items": []}).status_code == 422


def test_entries_come_in_stable_cursor_pages(api: Api) -> None:
    led = api.ledger()
    led.deposit("c1", "100.00", "CNY", "d")
    for i in range(6):
        led.consume("c1", "1.00", "CNY", f"u{i}")
    led.deposit("c1", "5.00", "USD", "usd")
    led.deposit("c2", "5.00", "CNY", "other")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/customers/c1/entries", **params).json()
        seen += page["data"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 8 and [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    assert {e["currency"] for e in seen} == {"CNY", "USD"} and seen[0]["idempotency_key"] == "d"
    only = api.get("/customers/c1/entries", currency="USD").json()["data"]
    assert [e["amount"] for e in only] == ["5.00"]
    r = api.get("/customers/c1/entries", cursor="not-a-cursor")
    assert r.status_code == 422 and r.json()["field"] == "cursor"
    assert api.get("/customers/nobody/entries").status_code == 404


def test_customer_search_by_key_and_crm_name_with_tier_and_flags(sqlite_api: Api, tmp_path: object) -> None:
    led = sqlite_api.ledger()
    led.deposit("zoho:Accounts:1001", "50.00", "CNY", "d1")
    led.deposit("walk-in-7", "5.00", "CNY", "d2")
    hits = sqlite_api.get("/customers", query="WALK").json()["data"]
    assert [h["customer"] for h in hits] == ["walk-in-7"] and hits[0]["accounts"] == [
        {"currency": "CNY", "balance": "5.00"}]
    assert len(sqlite_api.get("/customers").json()["data"]) == 2


def test_statement_as_html_csv_and_json(sqlite_api: Api) -> None:
    sqlite_api.ledger().deposit("c1", "12.34", "CNY", "d1")
    html = sqlite_api.get("/customers/c1/statement", format="html", lang="en")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "12.34" in html.text
    csv = sqlite_api.get("/customers/c1/statement", format="csv", lang="zh")
    assert csv.headers["content-type"].startswith("text/csv") and "12.34" in csv.text
    doc = sqlite_api.get("/customers/c1/statement", format="json").json()
    assert doc["customer"] == "c1"
    assert sqlite_api.get("/customers/c1/statement", format="pdf").status_code == 422
    assert sqlite_api.get("/customers/nobody/statement").status_code == 404


def test_balance_as_of_and_unknown_customer(sqlite_api: Api) -> None:
    sqlite_api.ledger().deposit("c1", "1.00", "CNY", "d1", effective_at=None)
    past = sqlite_api.get("/customers/c1/balance", currency="CNY", as_of="2000-01-01").json()
    assert past["balance"] == "0.00" and past["available"] is None and past["as_of"]
    r = sqlite_api.get("/customers/c9/balance", currency="CNY")
    assert r.status_code == 404 and r.json()["type"] == P + "not-found"
    assert sqlite_api.get("/customers/c1/balance").status_code == 422  # currency is required


def test_openapi_and_docs_are_generated_and_self_contained(sqlite_api: Api) -> None:
    spec = sqlite_api.session.get(f"{sqlite_api.url}/api/v1/openapi.json", timeout=60).json()
    assert "/api/v1/customers/{customer}/consumptions" in spec["paths"]
    assert "/api/v1/consumptions:batch" in spec["paths"]
    amount = spec["components"]["schemas"]["ConsumptionBody"]["properties"]["amount"]
    assert amount["type"] == "string"
    page = sqlite_api.session.get(f"{sqlite_api.url}/api/v1/docs", timeout=60)
    assert page.status_code == 200 and "consumptions:batch" in page.text
    assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text


def test_customer_search_joins_the_sync_state(sqlite_url: str, tmp_path: object) -> None:
    from pathlib import Path

    from api_support import InProcessServer, make_keys
    from connector.api.app import create_app  # noqa: F401 - built by InProcessServer

    folder = Path(str(tmp_path))
    mapping = Path(__file__).resolve().parents[2] / "connector" / "mapping" / "defaults" / "zoho.yaml"
    (folder / "prepaid-sync.toml").write_text(
        f'database_url = "{sqlite_url}"\n[connections.main]\ncrm = "zoho"\nmapping = "{mapping}"\n',
        encoding="utf-8")
    engine = make_engine(sqlite_url)
    write, read = make_keys(sqlite_url)
    from connector.ledger import Ledger
    Ledger(engine).deposit("zoho:Accounts:1001", "50.00", "CNY", "d1")
    from datetime import UTC, datetime
    with engine.begin() as conn:
        conn.execute(t.customers.insert().values(connection="main", crm_id="1001", name="Acme Trading",
                                                 tier="gold", fields=json.dumps({})))
        conn.execute(t.flags.insert().values(connection="main", customer_id="zoho:Accounts:1001",
                                             code="low_balance", marker="m", detail="",
                                             opened_at=datetime.now(UTC), run_id=1))
    server = InProcessServer(engine, config=folder / "prepaid-sync.toml")
    with server as url:
        api = Api(url, sqlite_url, write, read)
        hits = api.get("/customers", query="acme").json()["data"]
    assert hits == [{"customer": "zoho:Accounts:1001", "name": "Acme Trading", "connection": "main",
                     "tier": "gold", "flags": ["low_balance"],
                     "accounts": [{"currency": "CNY", "balance": "50.00"}]}]
