"""Cursors follow the CRM's clock, not ours: skew either way loses nothing, and a cursor saved ahead of the
CRM's clock is pulled back and reported. The sandboxes' `clock_offset` makes the CRM's clock differ from the
engine's (injected) clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import Clock, SandboxTime, fxiaoke_engine, zoho_engine
from sqlalchemy import select

from connector.sync import SyncEngine
from connector.sync import tables as t

HOUR = 3600


def _cursors(eng: SyncEngine) -> dict[str, datetime]:
    with eng.engine.connect() as conn:
        return dict(conn.execute(select(t.cursors.c.stream, t.cursors.c.cursor_at)).all())


class Zoho:
    """A Zoho sandbox whose clock runs `offset` seconds off the engine's clock."""

    def __init__(self, tmp_path: Path, offset: int) -> None:
        self.clock = Clock()
        self.eng, self.sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40, clock=self.clock,
                                        clock_offset=offset)
        self.offset = offset

    def crm_now(self) -> datetime:
        return datetime.fromtimestamp(self.sb.org.clock(), UTC)

    def wait(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    def correct_clock(self) -> None:
        """The connector's clock is set right: it now reads what the CRM's reads."""
        self.eng.clock = lambda: self.clock() + timedelta(seconds=self.offset)

    def pay(self, amount: str) -> str:
        """Record a payment in the CRM now (CRM time); returns its customer key."""
        org = self.sb.org
        account = next(a for a in org.modules["Accounts"].records.values() if a.get("Currency"))
        with org.lock:
            org.insert(
                org.modules["Prepaid_Payments"], {
                    "Name": f"PAY-LATE-{amount}", "Account": {
                        "name": account["Account_Name"], "id": account["id"]
                    }, "Amount": Decimal(amount), "Currency": account["Currency"],
                    "Payment_Date": "2025-12-01", "Payment_Status": "Received", "Payment_Method": "Card"
                })
        return f"zoho:Accounts:{account['id']}"


class Fxiaoke:
    """A Fxiaoke sandbox whose clock runs `offset` seconds off the engine's clock."""

    def __init__(self, tmp_path: Path, offset: int) -> None:
        self.eng, self.app = fxiaoke_engine(f"sqlite:///{tmp_path}/f.db", seed=40, clock_offset=offset)
        self.offset = offset
        crm = SandboxTime(self.app)
        self.eng.clock = lambda: crm() - timedelta(seconds=offset)  # the connector's clock

    def crm_now(self) -> datetime:
        return datetime.fromtimestamp(self.app.clock.now(), UTC)

    def wait(self, minutes: int) -> None:
        self.app.clock.advance(minutes * 60)

    def correct_clock(self) -> None:
        self.eng.clock = SandboxTime(self.app)

    def pay(self, amount: str) -> str:
        store = self.app.store
        model = next(
            p for p in store.table("PaymentObj").rows.values()
            if p.get("life_status") == "normal" and p.get("account_id") in store.table("AccountObj").rows and
            not str(p.get("payment_amount")).startswith(("-", "0")))
        store.create("PaymentObj",
                     {k: model[k]
                      for k in ("owner", "account_id", "payment_time", "payment_term")}
                     | {"payment_amount": amount, "remark": "recorded after the first run"},
                     self.app.credentials.open_user_id, raw=True)
        return f"fxiaoke:AccountObj:{model['account_id']}"


CRMS: dict[str, Any] = {"zoho": Zoho, "fxiaoke": Fxiaoke}


def _deposits(eng: SyncEngine, customer: str) -> set[Decimal]:
    from connector.ledger import Ledger

    return {Decimal(str(e["amount"])) for st in Ledger(eng.engine).history(customer) for e in st.entries
            if e["kind"] == "deposit"}


@pytest.mark.parametrize("crm", sorted(CRMS))
@pytest.mark.parametrize("ahead", [True, False], ids=["connector-ahead-1h", "connector-behind-1h"])
def test_payments_after_a_run_are_posted_whatever_the_skew(tmp_path: Path, crm: str, ahead: bool) -> None:
    side = CRMS[crm](tmp_path, -HOUR if ahead else HOUR)  # the CRM's clock an hour behind / ahead of ours
    crm_start = side.crm_now()
    first = side.eng.run()
    assert first.status in ("ok", "partial")
    assert first.crm_started_at is not None and abs(first.crm_started_at - crm_start) < timedelta(seconds=2)
    assert set(_cursors(side.eng).values()) == {first.crm_started_at}  # the CRM's time, not ours

    side.wait(minutes=5)
    late = side.pay("123.45")
    second = side.eng.run()
    assert second.deposits_posted == 1 and Decimal("123.45") in _deposits(side.eng, late)
    assert not second.cursors_pulled_back

    side.correct_clock()  # the connector's clock is put right: nothing is skipped either
    side.wait(minutes=5)
    later = side.pay("67.89")
    third = side.eng.run()
    assert third.deposits_posted == 1 and Decimal("67.89") in _deposits(side.eng, later)


@pytest.mark.parametrize("crm", sorted(CRMS))
def test_a_cursor_ahead_of_the_crm_is_pulled_back_and_reported(tmp_path: Path, crm: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    side = CRMS[crm](tmp_path, -HOUR)
    side.eng.run()
    # As saved before cursors followed the CRM, by a connector whose clock ran an hour ahead.
    ahead = side.crm_now() + timedelta(hours=1)
    with side.eng.engine.begin() as conn:
        conn.execute(t.cursors.update().values(cursor_at=ahead))
    side.wait(minutes=5)
    late = side.pay("123.45")
    report = side.eng.run()
    assert report.deposits_posted == 1 and Decimal("123.45") in _deposits(side.eng, late)
    pulled = {p["stream"]: p for p in report.cursors_pulled_back}
    assert "payments" in pulled and pulled["payments"]["cursor"] == ahead
    assert pulled["payments"]["pulled_back_to"] is not None and pulled["payments"][
        "pulled_back_to"] < side.crm_now()
    assert "ahead of the CRM's clock" in caplog.text
    assert max(_cursors(side.eng).values()) <= side.crm_now()  # saved again in the CRM's time
