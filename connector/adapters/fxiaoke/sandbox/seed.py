"""A deterministic, realistic sandbox tenant: employees, customers and their prepaid money.

`seed_tenant(store, n)` creates n AccountObj customers; most get a prepay contract
(`prepay_contract__c`) and payments (PaymentObj); some use the native customer account
(CustomerAccountObj with PrepayDetailObj rows). A few deliberate anomalies are mixed in, listed in
`Anomalies`, so tests can check that bad rows are reported and the rest still syncs.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from decimal import Decimal

from connector.adapters.fxiaoke.sandbox.store import Store

BASE_MS = 1_704_038_400_000  # 2024-01-01 00:00 China time
DAY_MS = 86_400_000
CITIES = ["上海", "北京", "深圳", "杭州", "成都", "苏州", "南京", "武汉", "西安", "广州"]
TRADES = ["云智", "华信", "联创", "博远", "星辰", "恒通", "易达", "天工", "锐思", "晨光"]
KINDS = ["科技", "贸易", "信息技术", "网络", "软件", "数据服务"]


def fake_hex(label: str, n: int = 32, upper: bool = True) -> str:
    """A deterministic hex string for sandbox identifiers and credentials (never real ones)."""
    digest = hashlib.sha256(f"prepaid-sync-sandbox:{label}".encode()).hexdigest()[:n]
    return digest.upper() if upper else digest


WHOLE_COMPANY = 999999  # the department id that stands for the whole company in /cgi/user/*list
SALES_DEPARTMENT = 1001


@dataclass(frozen=True)
class Employee:
    """A tenant employee as /cgi/user/* return it."""

    open_user_id: str
    name: str
    mobile: str
    user_id: str
    department: int = SALES_DEPARTMENT
    stopped: bool = False  # isStop: left the company (their records keep them as owner)
    updated_ms: int = BASE_MS  # when the directory entry last changed (/cgi/user/get/batchByUpdTime)


@dataclass
class Anomalies:
    """Record ids of the deliberate oddities, by kind."""

    by_kind: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, rid: str) -> None:
        """Remember one anomaly."""
        self.by_kind.setdefault(kind, []).append(rid)


def employees(seed: int) -> list[Employee]:
    """The administrator, four sales reps and one rep who has left (`stopped`, owns leads only)."""
    staff = [Employee(f"FSUID_{fake_hex(f'user-admin-{seed}')}", "系统管理员", "13800000000", "1000",
                      department=WHOLE_COMPANY)]
    for i, name in enumerate(["张伟", "王芳", "李娜", "刘洋", "赵磊"], start=1):
        staff.append(Employee(f"FSUID_{fake_hex(f'user-{i}-{seed}')}", name, f"1380000000{i}", str(1000 + i),
                              stopped=i == 5, updated_ms=BASE_MS + i * DAY_MS))
    return staff


LEAD_SOURCES = ("1", "2", "3", "4")
LEAD_STATUS = ("un_assigned", "un_processed", "processed", "closed")


def seed_leads(store: Store, n: int, staff: list[Employee], at_ms: int) -> None:
    """n LeadsObj (线索) rows, created after everything else so the other objects' ids do not move."""
    rng = random.Random(n * 31 + 7)
    admin = staff[0].open_user_id
    for i in range(n):
        owner = [staff[1 + i % (len(staff) - 1)].open_user_id]  # every rep, the one who left included
        store.create(
            "LeadsObj", {
                "name": f"{CITIES[i % 10]}线索{i:04d}",
                "owner": owner,
                "company": f"{TRADES[i % 10]}{KINDS[i % 6]}工作室",
                "mobile": f"139{i:08d}",
                "email": f"lead{i}@example.cn",
                "job_title": rng.choice(["经理", "采购", "总监"]),
                "source": rng.choice(LEAD_SOURCES),
                "biz_status": rng.choice(LEAD_STATUS),
                "remark": "官网留资",
            }, admin, at_ms=at_ms + i, raw=True)


def _money(rng: random.Random, low: int, high: int, step: int = 100) -> Decimal:
    return Decimal(rng.randrange(low, high, step)) + Decimal(rng.choice([0, 0, 0, 50])) / 100


def seed_tenant(store: Store, n: int, seed: int | None = None) -> Anomalies:
    """Fill `store` with `n` customers and their contracts, payments and prepayment rows."""
    rng = random.Random(n if seed is None else seed)
    staff = employees(n if seed is None else seed)
    reps = [e.open_user_id for e in staff[1:] if not e.stopped] or [staff[0].open_user_id]
    admin = staff[0].open_user_id
    anomalies = Anomalies()
    span = 365 * DAY_MS
    # Contract dates follow the tenant's clock: year-long contracts that started 35 to 400 days ago (China
    # midnight), so the tenant always shows a realistic mix of running, ending-soon and ended contracts.
    dates_from = (store.clock_ms() - 400 * DAY_MS - BASE_MS) // DAY_MS * DAY_MS + BASE_MS
    step = max(1, span // max(n, 1))
    name = ""
    for i in range(n):
        t = BASE_MS + i * step
        owner = [rng.choice(reps)]
        if i % 50 == 49:
            duplicate = True  # the API does no uniqueness check; tenants do have same-named customers
        else:
            duplicate = False
            name = f"{CITIES[i % 10]}{TRADES[(i // 10) % 10]}{KINDS[(i // 100) % 6]}有限公司{i:05d}"
        account = store.create("AccountObj", {
            "name": name, "owner": owner, "account_level": rng.choice(["jU4rV1qjg", "2", "3"]),
            "account_type": rng.choice(["1", "2"]), "tel": f"021-{6000_0000 + i}",
        }, admin, at_ms=t, raw=True)
        aid = account["_id"]
        if duplicate:
            anomalies.add("duplicate_name", aid)
        if i % 10 in (3, 7):
            continue  # no contract, no money yet
        amount = _money(rng, 1000, 200_000)
        valid_from = dates_from + (i * step // DAY_MS) * DAY_MS
        valid_until = valid_from + 365 * DAY_MS
        if i % 53 == 17:
            valid_until = valid_from - 30 * DAY_MS
            anomalies.add("contract_ends_before_start", "pending")
        contract = store.create(
            "prepay_contract__c", {
                "name": f"PC-{i:06d}",
                "owner": owner,
                "account_id__c": aid,
                "prepay_amount__c": f"{amount:.2f}",
                "valid_from__c": valid_from,
                "valid_until__c": valid_until,
                "due_date__c": valid_from + 15 * DAY_MS,
                "refund_policy__c": rng.choice(["option1", "9dKe2", "mQ7sv"]),
                "refund_fee_pct__c": rng.choice(["0.00", "5.00", "10.00"]),
                "credit_limit__c": rng.choice(["0.00", "5000.00", "20000.00"]),
                "low_balance_threshold__c": f"{amount / 10:.2f}",
                "contract_status__c": "xR41b",
            }, admin, at_ms=t + 1000, raw=True)
        if i % 53 == 17:
            anomalies.by_kind["contract_ends_before_start"][-1] = contract["_id"]
        paid = amount if i % 4 else amount / 2
        parts = [paid] if i % 3 else [(paid / 2).quantize(Decimal("0.01")), paid -
                                      (paid / 2).quantize(Decimal("0.01"))]
        paid_on = [valid_from + (k + 1) * 3 * DAY_MS for k in range(len(parts))]
        payment_ids, funded = _seed_payments(store, rng, i, parts, paid_on, owner, admin, aid,
                                             contract["_id"], t, anomalies)
        if i % 71 == 11:
            store.set_life_status("PaymentObj", payment_ids[0], "invalid", admin, at_ms=t + 3 * DAY_MS)
            anomalies.add("invalidated_payment", payment_ids[0])
        if i % 5 == 0:
            _native_account(store, rng, aid, owner, admin, payment_ids, (paid, funded), paid_on, t + 5000, i,
                            anomalies)
    if n >= 50:
        orphan = store.create("PaymentObj", {
            "owner": [admin], "account_id": "000000000000000000000000", "payment_amount": "88.00",
            "payment_time": BASE_MS, "remark": "客户已删除",
        }, admin, at_ms=BASE_MS + span, raw=True)
        anomalies.add("orphan_payment", orphan["_id"])
    seed_leads(store, max(1, n // 5), staff, BASE_MS + span + 1000)
    return anomalies


def _seed_payments(store: Store, rng: random.Random, i: int, parts: list[Decimal], paid_on: list[int],
                   owner: list[str], admin: str, aid: str, contract_id: str, t: int,
                   anomalies: Anomalies) -> tuple[list[str], Decimal]:
    """Customer `i`'s payments (with the planted bad ones); answers their ids and the amount they fund."""
    payment_ids: list[str] = []
    funded = Decimal(0)  # what the good payments bring in: the most the customer's consumption may spend
    for k, part in enumerate(parts):
        value = f"{part:.2f}"
        if i % 97 == 41 and k == 0:
            value = f"-{value}"
            anomalies.add("negative_payment", "pending")
        elif i % 89 == 23 and k == 0:
            value = "0.00"
            anomalies.add("zero_payment", "pending")
        elif not (i % 71 == 11 and k == 0):
            funded += part
        payment = store.create("PaymentObj", {
            "owner": owner, "account_id": aid, "payment_amount": value,
            "payment_time": paid_on[k], "payment_term": rng.choice(["post", "1", "2"]),
            "contract_id__c": contract_id, "remark": f"首付款 {k + 1}",
        }, admin, at_ms=t + 2000 + k, raw=True)
        payment_ids.append(payment["_id"])
        for kind in ("negative_payment", "zero_payment"):
            if anomalies.by_kind.get(kind, [""])[-1] == "pending":
                anomalies.by_kind[kind][-1] = payment["_id"]
    return payment_ids, funded


def _native_account(store: Store, rng: random.Random, aid: str, owner: list[str], admin: str,
                    payment_ids: list[str], money: tuple[Decimal, Decimal], paid_on: list[int], t: int,
                    i: int, anomalies: Anomalies) -> None:
    """The native customer account: an income row mirroring the payments and, often, one consumption.

    The consumption is dated after the last payment (a day later, in office hours) and spends part
    of what the good payments brought in, so it never draws on money that is not there yet.
    """
    paid, funded = money
    spent = (funded * Decimal(rng.choice([0, 10, 35, 80])) / 100).quantize(Decimal("0.01"))
    balance = funded - spent
    shown = balance + Decimal("100.00") if i % 35 == 15 else balance
    acct = store.create("CustomerAccountObj", {
        "owner": owner, "customer_id": aid, "prepay_balance": f"{shown:.2f}",
        "prepay_available_balance": f"{shown:.2f}", "prepay_locked_balance": "0.00", "rebate_balance": "0.00",
        "settle_type": "prepay", "credit_quota": "0.00",
    }, admin, at_ms=t, raw=True)
    if shown != balance:
        anomalies.add("account_balance_mismatch", acct["_id"])
    store.create("PrepayDetailObj", {
        "owner": owner, "customer_id": aid, "customer_account_id": acct["_id"], "amount": f"{paid:.2f}",
        "transaction_time": paid_on[0], "payment_id": payment_ids[0], "income_type": "1",
        "record_type": "income_record_type__c",
    }, admin, at_ms=t + 1, raw=True)
    if spent:
        store.create("PrepayDetailObj", {
            "owner": owner, "customer_id": aid, "customer_account_id": acct["_id"], "amount": f"{spent:.2f}",
            "transaction_time": paid_on[-1] + DAY_MS + (9 + i % 9) * 3_600_000, "outcome_type": "1",
            "record_type": "default__c",
        }, admin, at_ms=t + 2, raw=True)
