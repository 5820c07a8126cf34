"""A deterministic, realistic sandbox org: owners, accounts in several currencies, prepayment deals,
payments, a few deletions, and deliberate anomalies a sync must report rather than swallow."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.adapters.zoho.sandbox.store import Org

BASE_EPOCH = 1_761_955_200  # 2025-11-01T00:00:00Z
_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent", "Tyrell",
          "Cyberdyne", "Wonka", "Zylker", "Pied Piper", "Massive", "Oscorp", "Gringotts", "Monarch"]
_SUFFIX = ["Ltd", "Inc", "GmbH", "Pvt Ltd", "KK", "Co", "LLC", "SA"]
_CURRENCY_WEIGHTS = [("USD", 40), ("EUR", 20), ("INR", 15), ("GBP", 8), ("JPY", 7), ("CNY", 5), ("AUD", 3),
                     ("SGD", 2)]
ANOMALY_EVERY = 37


def _amount(rng: random.Random, currency: str, low: int, high: int) -> Decimal:
    units = rng.randint(low, high) * (100 if currency == "JPY" else 1)
    if currency == "JPY":
        return Decimal(units)
    return Decimal(units) + Decimal(rng.choice([0, 0, 50, 99, 25])) / 100


def seed_org(org: Org, accounts: int, seed: int = 0, *, related: bool = True) -> dict[str, Any]:
    """Fill `org` with `accounts` accounts (plus deals and payments when `related`); returns a summary."""
    rng = random.Random(seed)
    owners = [org.current_user] + [org.add_user(name, f"{name.split()[0].lower()}@sandbox.example")
                                   for name in ("Patricia Boyle", "Ravi Menon", "Akiko Sato", "Lena Fischer")]
    acc, deals, pays = org.modules["Accounts"], org.modules["Deals"], org.modules["Prepaid_Payments"]
    codes = [c for c, w in _CURRENCY_WEIGHTS for _ in range(w)]
    clock = BASE_EPOCH
    today = datetime.fromtimestamp(org.now(), UTC).date()
    anomalies: list[str] = []
    summary: dict[str, Any] = {"accounts": 0, "deals": 0, "payments": 0, "deleted": 0, "anomalies": anomalies}
    for i in range(accounts):
        clock += rng.choice((0, 0, 1, 1, 2, 5))  # many records share a second, as in real orgs
        owner = rng.choice(owners)
        currency = rng.choice(codes)
        name = f"{rng.choice(_WORDS)} {rng.choice(_SUFFIX)} {i + 1}"
        kind = i % ANOMALY_EVERY == ANOMALY_EVERY - 1
        values: dict[str, Any] = {
            "Account_Name": name, "Ledger_Customer_ID": f"C-{i + 1:06d}", "Currency": currency,
            "Exchange_Rate": Decimal("1.000000000"), "Account_Type": "Customer",
            "Industry": rng.choice(["Software", "Retail",
                                    "Services"]), "Phone": f"+1-555-{rng.randint(1000, 9999)}"
        }
        anomaly = (i // ANOMALY_EVERY) % 5 if kind else -1
        if anomaly == 0:
            values["Currency"] = None
            anomalies.append(f"account {name}: no currency")
        rec = org.insert(acc, values, owner=owner, at=clock)
        summary["accounts"] += 1
        if not related:
            continue
        # Contract dates follow the org's clock (a year-long plan that started 35 to 400 days ago), so the
        # org always shows a realistic mix: most plans running, some ending soon, some ended with money left.
        start = today - timedelta(days=rng.randint(35, 400))
        prepay = _amount(rng, currency, 10, 500) * 10
        deal_values: dict[str, Any] = {
            "Deal_Name": f"Prepaid plan {name}", "Account_Name": {"name": name, "id": rec["id"]},
            "Stage": "Closed Won", "Currency": currency, "Amount": prepay, "Prepay_Amount": prepay,
            "Closing_Date": start.isoformat(), "Valid_From": start.isoformat(),
            "Valid_Until": (start + timedelta(days=365)).isoformat(),
            "Refund_Policy": rng.choice(["Full", "Prorated", "No Refund"]),
            "Refund_Fee_Pct": Decimal(rng.choice([0, 5, 10])), "Credit_Limit": Decimal(0),
            "Low_Balance_Threshold": (prepay /
                                      10).quantize(Decimal(1) if currency == "JPY" else Decimal("0.01"))
        }
        if anomaly == 1:
            deal_values["Valid_Until"] = (start - timedelta(days=30)).isoformat()
            anomalies.append(f"deal for {name}: valid_until before valid_from")
        if anomaly == 2 and currency == "JPY":
            deal_values["Prepay_Amount"] = prepay + Decimal("0.50")
            anomalies.append(f"deal for {name}: JPY amount with decimals")
        elif anomaly == 2:
            deal_values["Prepay_Amount"] = -prepay
            anomalies.append(f"deal for {name}: negative prepay amount")
        deal = org.insert(deals, deal_values, owner=owner, at=clock)
        summary["deals"] += 1
        for n in range(rng.choice((1, 1, 1, 2))):
            amount = prepay if n == 0 else _amount(rng, currency, 1, 100)
            pay_values: dict[str, Any] = {
                "Name": f"PAY-{i + 1:06d}-{n + 1}", "Account": {"name": name, "id": rec["id"]},
                "Deal": {"name": deal_values["Deal_Name"],
                         "id": deal["id"]}, "Amount": amount, "Currency": currency,
                "Payment_Date": (start + timedelta(days=n * 30)).isoformat(), "Payment_Status": "Received",
                "Payment_Method": rng.choice(["Bank Transfer", "Card", "Cheque"])
            }
            if anomaly == 3 and n == 0:
                pay_values["Account"] = None
                anomalies.append(f"payment PAY-{i + 1:06d}-1: no account")
            if anomaly == 4 and n == 0:
                pay_values["Currency"] = "EUR" if currency != "EUR" else "USD"
                anomalies.append(f"payment PAY-{i + 1:06d}-1: currency differs from its deal")
            org.insert(pays, pay_values, owner=owner, at=clock)
            summary["payments"] += 1
    if related:
        for rec_id in list(acc.records)[5::50][: max(0, accounts // 50)]:
            org.delete(acc, rec_id)
            acc.deleted[-1]["_deleted"] = clock + 60
            summary["deleted"] += 1
    return summary
