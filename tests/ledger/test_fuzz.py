"""Fuzzing (issue 17.7): hypothesis-made amounts, keys, dates and CSV rows through the CLI and the ledger API.

Every outcome is an answer: exit 0, 2 (invalid input) or 3 (refused by a ledger rule), never a
traceback; a refusal leaves the database exactly as it was. The CLI runs in-process (typer's
CliRunner); SQLite gets the larger budget, PostgreSQL a smaller one. `HYPOTHESIS_PROFILE=deep`
runs many more examples.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hostile import fingerprint, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConnectorError
from connector.ledger import Ledger
from connector.db.engine import make_engine
from connector.ledger.verify import verify

# -- what people (and files) type ---------------------------------------------------------------

_NEAR_AMOUNT = list("0123456789.-+,_eE ") + [
    "\u00a0", "\uff11", "\u0663", "\u2212", "\x00", "\x1b", "'", "NaN"
]
AMOUNTS = st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2).map(str),  # mostly good money
    st.integers(min_value=-10**25, max_value=10**25).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),  # 1E+400, -0, NaN, Infinity, ...
    st.lists(st.sampled_from(_NEAR_AMOUNT), max_size=12).map("".join),
    st.sampled_from(
        ["9999999999999.99", "10000000000000.00", "92233720368547758.07", "-0", "1e400", "100,00"]),
)
_PLAIN_KEY = st.text(alphabet="abcxyz019-:_", min_size=1, max_size=6)
KEYS = st.one_of(
    _PLAIN_KEY, _PLAIN_KEY,  # reuse keys often, so replays and conflicts happen
    st.text(max_size=12),  # anything: control characters, surrogates, escapes, markup, CJK
    st.sampled_from(["x[/]", "[bold]k", "c\x1b[31m", "c\x00", "k\u202e", " ", "", "a" * 256, "客户"]),
)
CUSTOMERS = st.one_of(st.sampled_from(["c1", "c2", "客户"]), KEYS)
CURRENCIES = st.sampled_from(["CNY", "CNY", "JPY", "KWD", "cny", "XYZ", "", "C\x00Y"])
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
DATES = st.one_of(
    st.none(),
    st.dates().map(str),  # years 1 to 9999
    st.datetimes(timezones=_ZONES).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31", "0001-01-01T00:00:00+05:00", "1970-01-01", "9998-12-31", "2026-01-15",
                     "2025-06-30T23:59:59Z", "２０２６-01-01", "2026-13-01", "soon"]),
    st.text(max_size=12),
)


def _command(op: str, customer: str, amount: str, currency: str, key: str, when: str | None,
             expires: str | None, memo: str) -> list[str]:
    """A ledger command line; amounts and keys go after `--` so a leading '-' is read as a value."""
    options = ["--currency", currency, "--key", key]
    if op == "adjust" or memo:
        options += ["--memo", memo]
    if when is not None:
        options += ["--effective", when]
    if expires is not None and op in ("deposit", "adjust"):
        options += ["--expires", expires]
    return ["ledger", op, *options, "--", customer, amount]


COMMANDS = st.builds(_command, st.sampled_from(["deposit", "deposit", "consume", "refund", "adjust"]),
                     CUSTOMERS, AMOUNTS, CURRENCIES, KEYS, DATES, DATES,
                     st.one_of(st.just(""), st.text(max_size=8)))
READS = st.one_of(
    st.builds(lambda c, d: ["ledger", "balance", c, *(["--as-of", d] if d else [])], CUSTOMERS, DATES),
    st.builds(lambda c, d: ["ledger", "history", c, *(["--from", d] if d else [])], CUSTOMERS, DATES),
    st.builds(lambda i: ["ledger", "entry", "--", str(i)], st.integers(min_value=-10**25, max_value=10**25)),
    st.builds(
        lambda i, k: ["ledger", "reverse", "--key", k, "--", str(i)],
        st.one_of(st.integers(min_value=1, max_value=5), st.integers(min_value=-10**25, max_value=10**25)),
        KEYS),
)

_CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["deposit", "consume", "c1", "10", "CNY", "true"]))
ROWS = st.lists(
    st.tuples(st.sampled_from(["deposit", "consume", "refund", "adjust", "Deposit", "x"]), CUSTOMERS, AMOUNTS,
              CURRENCIES, KEYS, st.one_of(st.none(), DATES), _CELLS), min_size=1, max_size=6)
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "gbk", "latin-1"])


def _csv_bytes(rows: list[tuple[object, ...]], encoding: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["op", "customer", "amount", "currency", "key", "effective_at", "memo"])
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode(encoding, errors="replace")


# -- the properties --------------------------------------------------------------------------------

SCALE = max(1, settings.default.max_examples // 60)  # the `deep` profile runs ~30 times more

def _fuzz_cli(url: str, tmp_path: Path, examples: int) -> None:
    engine = make_engine(url)

    def check(args: list[str]) -> None:
        before = fingerprint(engine)
        out = invoke(url, *args)
        assert out.exception is None, f"{args!r} raised {out.exception!r}"
        assert out.code in (0, 2, 3), (args, out.code, out.text)
        assert "Traceback" not in out.text
        if out.code != 0:
            assert fingerprint(engine) == before, f"{args!r} was refused but wrote"

    @settings(max_examples=examples * SCALE, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(st.one_of(COMMANDS, COMMANDS, READS), min_size=1, max_size=4),
           st.one_of(st.none(), st.tuples(ROWS, ENCODINGS)))
    def run(commands: list[list[str]], upload: tuple[list[tuple[object, ...]], str] | None) -> None:
        for args in commands:
            check(args)
        if upload is not None:
            path = tmp_path / "fuzz.csv"
            path.write_bytes(_csv_bytes(*upload))
            check(["ledger", "import", str(path)])

    try:
        run()
        report = verify(engine)
        assert report.ok, report.problems
    finally:
        engine.dispose()


def _fuzz_api(url: str, examples: int) -> None:
    engine = make_engine(url)
    ledger = Ledger(engine, clock=lambda: datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    ops: dict[str, Callable[..., object]] = {"deposit": ledger.deposit, "consume": ledger.consume,
                                             "refund": ledger.refund}
    values = st.one_of(AMOUNTS, st.decimals(), st.integers(min_value=-10**20, max_value=10**20),
                       st.floats(allow_nan=True), st.booleans(), st.none())
    times = st.one_of(st.none(), st.datetimes(timezones=st.one_of(st.none(), _ZONES)))

    @settings(max_examples=examples * SCALE, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(["deposit", "consume", "refund", "adjust", "reverse", "entry"]), CUSTOMERS, values,
           CURRENCIES, KEYS, times, times, st.integers(min_value=-10**20, max_value=10**20))
    def run(op: str, customer: str, amount: object, currency: str, key: str, effective: datetime | None,
            expires: datetime | None, entry_id: int) -> None:
        before = fingerprint(engine)
        try:
            if op == "adjust":
                ledger.adjust(customer, amount, currency, key, memo="fuzz", effective_at=effective,
                              expires_at=expires)
            elif op == "reverse":
                ledger.reverse(entry_id % 7 if entry_id % 2 else entry_id, key, effective_at=effective)
            elif op == "entry":
                ledger.entry(entry_id)
            elif op == "deposit":
                ledger.deposit(customer, amount, currency, key, effective_at=effective, expires_at=expires)
            else:
                ops[op](customer, amount, currency, key, effective_at=effective)
        except ConnectorError as exc:
            assert exc.exit_code in (2, 3), exc
            assert fingerprint(engine) == before, f"{op} refused ({exc}) but wrote"

    try:
        run()
        assert verify(engine).ok
    finally:
        engine.dispose()


@pytest.fixture
def fast_sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file in memory-backed /dev/shm when there is one: fsync is then free, the rules are the
    same."""
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    yield f"sqlite:///{where}/fuzz.db"
    if where != tmp_path:
        shutil.rmtree(where, ignore_errors=True)


def test_fuzz_cli_on_sqlite(fast_sqlite_url: str, tmp_path: Path) -> None:
    _fuzz_cli(fast_sqlite_url, tmp_path, examples=200)


def test_fuzz_api_on_sqlite(fast_sqlite_url: str) -> None:
    _fuzz_api(fast_sqlite_url, examples=300)


@pytest.mark.postgres
def test_fuzz_cli_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    _fuzz_cli(pg_url, tmp_path, examples=40)


@pytest.mark.postgres
def test_fuzz_api_on_postgresql(pg_url: str) -> None:
    _fuzz_api(pg_url, examples=60)
