"""Property tests: random operation sequences keep every ledger invariant."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from connector.errors import LedgerRuleError
from connector.ledger import Ledger
from connector.ledger import store
from connector.db.engine import make_engine
from connector.ledger.verify import verify
from clock import Clock

cents = st.integers(min_value=1, max_value=50_000)
op = st.one_of(
    st.tuples(st.just("deposit"), cents, st.sampled_from([None, 1, 5, 40]), st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("consume"), cents),
    st.tuples(st.just("refund"), cents),
    st.tuples(st.just("adjust"), st.integers(-20_000, 20_000).filter(bool)),
    st.tuples(st.just("reverse"), st.integers(0, 50)),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    st.tuples(st.just("advance"), st.integers(1, 20)),
    st.tuples(st.just("expire")),
)


def _account_totals(ledger: Ledger, customer: str) -> tuple[int, int, int, int]:
    with ledger.engine.connect() as conn:
        acc = conn.execute(select(store.accounts).where(store.accounts.c.customer_key == customer)).one()
        entries = conn.execute(select(func.coalesce(func.sum(store.entries.c.amount), 0))
                               .where(store.entries.c.account_id == acc.id)).scalar()
        lots = conn.execute(select(func.coalesce(func.sum(store.lots.c.remaining), 0))
                            .where(store.lots.c.account_id == acc.id)).scalar()
        low = conn.execute(select(func.min(
            store.lots.c.remaining)).where(store.lots.c.account_id == acc.id)).scalar()
    return acc.balance, int(entries), int(lots) - acc.debt, int(low if low is not None else 0)


def run_sequence(ledger: Ledger, clock: Clock, ops: list[tuple], credit_limit: int) -> None:  # type: ignore[type-arg]
    customer = f"prop:{uuid.uuid4().hex}"
    ledger.set_terms(customer, "CNY", credit_limit=Decimal(credit_limit) / 100, refund_policy="full")
    done: list[tuple[str, object, str]] = []  # (op, args, key) of successful postings, for replay
    entry_ids: list[int] = []
    for n, step in enumerate(ops):
        kind = step[0]
        key = f"{customer}:{n}"
        before = _account_totals(ledger, customer)[0]
        try:
            if kind == "deposit":
                _, amount, days, refundable, prio = step
                exp = clock() + timedelta(days=days) if days else None
                r = ledger.deposit(customer, Decimal(amount) / 100, "CNY", key, expires_at=exp,
                                   refundable=refundable, priority=prio)
                done.append((kind, (amount, exp, refundable, prio), key))
            elif kind in ("consume", "refund"):
                r = getattr(ledger, kind)(customer, Decimal(step[1]) / 100, "CNY", key)
                done.append((kind, step[1], key))
            elif kind == "adjust":
                r = ledger.adjust(customer, Decimal(step[1]) / 100, "CNY", key, memo="prop")
                done.append((kind, step[1], key))
            elif kind == "reverse" and entry_ids:
                r = ledger.reverse(entry_ids[step[1] % len(entry_ids)], key)
            elif kind == "replay" and done:
                what, args, old_key = done[step[1] % len(done)]
                if what == "deposit":
                    amount, exp, refundable, prio = args  # type: ignore[misc]
                    r = ledger.deposit(customer, Decimal(amount) / 100, "CNY", old_key, expires_at=exp,
                                       refundable=refundable, priority=prio)
                elif what == "adjust":
                    r = ledger.adjust(customer, Decimal(args) / 100, "CNY", old_key, memo="prop")  # type: ignore[arg-type]
                else:
                    r = getattr(ledger, what)(customer, Decimal(args) / 100, "CNY", old_key)  # type: ignore[arg-type]
                assert r.status == "exists"
                assert _account_totals(ledger, customer)[0] == before, "a replay changed the balance"
                continue
            elif kind == "advance":
                clock.advance(days=step[1])
                continue
            elif kind == "expire":
                lots_before = _account_totals(ledger, customer)
                swept = [x for x in ledger.expire() if x.data["customer"] == customer]
                taken = sum(-int(Decimal(x.data["entries"][0]["amount"]) * 100) for x in swept)
                assert taken >= 0
                assert _account_totals(ledger, customer)[0] == lots_before[0] - taken
                assert ledger.expire() == [] or all(x.data["customer"] != customer for x in ledger.expire())
                continue
            else:
                continue
            assert r.status == "created"
            entry_ids.extend(r.entry_ids)
        except LedgerRuleError:
            assert _account_totals(ledger, customer)[0] == before, "a refused posting changed the balance"
        balance, entries, lots_minus_debt, lowest = _account_totals(ledger, customer)
        assert balance == entries == lots_minus_debt
        assert lowest >= 0
        assert balance >= -credit_limit
    report = verify(ledger.engine)
    assert report.ok, report.problems


def test_random_histories_keep_the_invariants(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/prop.db")
    clock = Clock()
    ledger = Ledger(engine, clock=clock)

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(op, min_size=1, max_size=25), st.sampled_from([0, 0, 5_000]))
    def check(ops: list[tuple], credit_limit: int) -> None:  # type: ignore[type-arg]
        run_sequence(ledger, clock, ops, credit_limit)

    check()
    engine.dispose()
