"""Hostile input through the real CLI, on SQLite and PostgreSQL: a clean answer every time, nothing bricked.

Issue 11.1 (one strict money grammar) and 17.1-17.4 (limits, out-of-range values, hidden characters,
exit codes). Every refusal is one line, exit 2 (or 3 for a ledger rule), and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import Outcome, fingerprint, invoke
from sqlalchemy import Engine, text

from connector.ledger import Ledger, store
from connector.db.engine import make_engine
from connector.money import MAX_MINOR

C = "zoho:Accounts:4876876000000123"
GRAMMAR = "accepted: ASCII digits 0-9 with at most one '.' and 2 decimals for CNY, e.g. 1234.50"
SIGN_RULE = "is refused: the amount must be positive, written without a sign"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def refused(url: str, engine: Engine, *args: str, code: int = 2) -> Outcome:
    """Run a command that must be refused: exit `code`, one line on stderr, no traceback, nothing written."""
    before = fingerprint(engine)
    out = invoke(url, *args)
    assert out.exception is None, out.exception
    assert out.code == code, (out.code, out.text)
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.text
    assert fingerprint(engine) == before
    return out


def ok(url: str, *args: str) -> Outcome:
    out = invoke(url, *args)
    assert out.exception is None and out.code == 0, (out.code, out.text, out.exception)
    return out


# -- 11.1: one strict grammar for amounts ---------------------------------------------------------

BAD_AMOUNTS = [
    ("100,00", "',' is not accepted (no decimal commas, no thousands separators)"),
    ("1,000.00", "',' is not accepted"),
    ("1e5", "exponents ('e') are not accepted"),
    ("1e400", "exponents"),
    ("1e20", "exponents"),
    ("1_000", "'_' is not accepted"),
    ("１００", "non-ASCII character '１' (U+FF11 FULLWIDTH DIGIT ONE)"),
    (" 100", "spaces around it"),
    ("100 ", "spaces around it"),
    ("+100", "'+' is not accepted"),
]


def test_amounts_outside_the_grammar_exit_2_showing_what_was_read(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", C, "50", "--currency", "CNY", "--key", "seed")
    for amount, why in BAD_AMOUNTS:
        for op in ("deposit", "consume", "refund"):
            out = refused(db_url, engine, "ledger", op, C, amount, "--currency", "CNY", "--key", "x")
            assert f"amount: {amount!r} is not an amount: " in out.stderr
            assert why in out.stderr and GRAMMAR in out.stderr


def test_negative_amounts_after_double_dash_get_one_rule_message(db_url: str, engine: Engine) -> None:
    for op in ("deposit", "consume", "refund"):
        for amount in ("-0", "-5", "-0.00", "-100.50"):
            out = refused(db_url, engine, "ledger", op, "--currency", "CNY", "--key", "x", "--", C, amount)
            assert out.stderr == (
                f"error: amount: {amount!r} {SIGN_RULE}; accepted: ASCII digits 0-9 with at "
                "most one '.' and 2 decimals, e.g. 1234.50\n")


def test_signed_adjustments_and_terms_use_the_same_grammar(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", C, "50", "--currency", "CNY", "--key", "seed")
    assert "must not be zero" in refused(db_url, engine, "ledger", "adjust", C, "-0", "--currency", "CNY",
                                         "--key", "a1", "--memo", "why").stderr
    assert "',' is not accepted" in refused(db_url, engine, "ledger", "adjust", C, "-1,50", "--currency",
                                            "CNY", "--key", "a2", "--memo", "why").stderr
    ok(db_url, "ledger", "adjust", C, "-1.50", "--currency", "CNY", "--key", "a3", "--memo", "why")
    out = refused(db_url, engine, "ledger", "terms", C, "--currency", "CNY", "--credit-limit", "1,000")
    assert "credit_limit: '1,000' is not an amount" in out.stderr
    out = refused(db_url, engine, "ledger", "terms", C, "--currency", "CNY", "--credit-limit=-0")
    assert ("credit_limit: '-0' is refused: the amount must be zero or positive, written without a sign"
            in out.stderr)


# -- 17.1: no account can be bricked ------------------------------------------------------------


@pytest.mark.parametrize("amount",
                         ["92233720368547758.07", "99999999999999999999999.99", "10000000000000.00"])
def test_amounts_above_the_limit_exit_2_naming_it(db_url: str, engine: Engine, amount: str) -> None:
    out = refused(db_url, engine, "ledger", "deposit", "fz2", amount, "--currency", "CNY", "--key", "k")
    assert ("is above the limit of 9999999999999.99 CNY per amount (see 'Limits' in docs/ledger.md)"
            in out.stderr)


def test_a_full_account_refuses_more_and_stays_usable(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", "fz2", "9999999999999.99", "--currency", "CNY", "--key", "k1")
    out = refused(db_url, engine, "ledger", "deposit", "fz2", "0.01", "--currency", "CNY", "--key", "k2")
    assert out.stderr == ("error: deposit of 0.01 CNY for customer fz2 refused: the balance would be "
                          "10000000000000.00 CNY, above the limit of 9999999999999.99 CNY per balance (see "
                          "'Limits' in docs/ledger.md); nothing was written\n")
    refused(db_url, engine, "ledger", "adjust", "fz2", "1", "--currency", "CNY", "--key", "k3", "--memo", "m")
    spent = ok(db_url, "ledger", "consume", "fz2", "0.02", "--currency", "CNY", "--key", "k4", "--json")
    ok(db_url, "ledger", "deposit", "fz2", "0.02", "--currency", "CNY", "--key", "k5")
    assert '"balance": "9999999999999.97"' in spent.stdout
    # reversing the consumption would push the balance past the limit again
    entry = spent.stdout.split('"id": ')[1].split(",")[0]
    refused(db_url, engine, "ledger", "reverse", entry, "--key", "k6")
    assert ok(db_url, "ledger", "verify", "--json").stdout.count('"ok": true') == 1


def test_sums_never_overflow_even_past_the_64_bit_range(db_url: str, engine: Engine) -> None:
    # Backdated deposits make a balance "as of" an earlier time larger than any balance ever was.
    # Past 2**63 minor units SQLite's own SUM() raises "integer overflow"; ours does not.
    ledger = Ledger(engine)
    big = MAX_MINOR // 100
    ledger.deposit("s", "9999999999999.99", "CNY", "s0", effective_at=_at("2026-01-01"))
    at = _at("2026-01-02")
    with engine.begin() as conn:  # bypass the rules: a corrupt database must still be verifiable
        acc = conn.execute(text("SELECT id FROM accounts WHERE customer_key = 's'")).scalar_one()
        for i in range(2):
            conn.execute(store.postings.insert().values(key=f"evil{i}", op="deposit", payload_hash="x",
                                                        customer_key="s", currency="CNY", result="{}",
                                                        recorded_at=at))
            conn.execute(store.entries.insert().values(account_id=acc, kind="deposit", amount=2**62 + big,
                                                       balance_after=0, effective_at=at, recorded_at=at,
                                                       posting_key=f"evil{i}", memo=""))
    out = invoke(db_url, "ledger", "verify", "--json")
    assert out.exception is None and out.code == 1 and '"ok": false' in out.stdout
    out = invoke(db_url, "ledger", "balance", "s", "--as-of", "2026-01-03", "--json")
    assert out.exception is None and out.code == 0
    out = invoke(db_url, "ledger", "history", "s", "--from", "2026-01-03", "--json")
    assert out.exception is None and out.code == 0


def _at(day: str):  # type: ignore[no-untyped-def]
    from connector.timeutil import parse_datetime

    return parse_datetime(day, "t")


# -- 17.2: out-of-range dates and ids ----------------------------------------------------------------

OUT_OF_RANGE = [
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "d1", "--expires", "9999-12-31"), [
        "expires: '9999-12-31' is outside the supported range", "1970-01-01 to 9998-12-31",
        "leave the expiry out"
    ]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "d2", "--effective",
      "0001-01-01T00:00:00+05:00"), ["effective: '0001-01-01T00:00:00+05:00' is outside the supported range"
                                     ]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "d3", "--expires",
      "9999-12-31T23:59:59-05:00"), ["outside the supported range"]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "d4", "--effective", "1969-12-31"),
     ["outside the supported range"]),
    (("ledger", "balance", C, "--as-of", "9999-12-31"),
     ["as-of: '9999-12-31' is outside the supported range"]),
    (("ledger", "balance", C, "--known-at", "0001-01-01"), ["outside the supported range"]),
    (("ledger", "history", C, "--to", "9999-12-31"), ["outside the supported range"]),
    (("ledger", "expire", "--as-of", "0001-01-01T00:00:00+14:00"), ["outside the supported range"]),
    (("ledger", "terms", C, "--currency", "CNY", "--valid-until", "9999-12-31"),
     ["outside the supported range"]),
    (("ledger", "deposit", C, "5", "--currency", "CNY", "--key", "d5", "--expires", "２０３０-01-01"),
     ["is not an ISO 8601 date"]),
    (("ledger", "reverse", "99999999999999999999", "--key", "r"),
     ["entry 99999999999999999999 does not exist"]),
    (("ledger", "entry", "99999999999999999999"), ["entry 99999999999999999999 does not exist"]),
    (("ledger", "entry", "2147483648"), ["entry 2147483648 does not exist"]),
    (("ledger", "reverse", "--key", "r", "--", "-1"), ["entry -1 does not exist"]),
]


def test_out_of_range_values_are_one_line_refusals(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", C, "50", "--currency", "CNY", "--key", "seed")
    for args, words in OUT_OF_RANGE:
        out = refused(db_url, engine, *args)
        for word in words:
            assert word in out.stderr, (args, out.stderr)


# -- 17.2 / 17.4: CSV files -------------------------------------------------------------------------

HEADER = "op,customer,amount,currency,key,memo\n"


def _csv(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_csv_in_utf8_with_or_without_bom_and_utf16_with_bom(db_url: str, tmp_path: Path,
                                                            encoding: str) -> None:
    body = HEADER + "deposit,客户一,10.50,CNY,i1,预付款\r\n"
    out = ok(db_url, "ledger", "import", _csv(tmp_path, "in.csv", body.encode(encoding)), "--json")
    assert '"created": 1' in out.stdout
    assert '"customer": "客户一"' in ok(db_url, "ledger", "balance", "客户一", "--json").stdout


UNREADABLE = [
    ((HEADER + "deposit,c,10,CNY,g1,预付款\n").encode("gbk"),
     ["line 2, character 22: the bytes b'\\xb8\\xb6\\xbf\\xee' are not UTF-8", "save it as UTF-8"]),
    ((HEADER + "deposit,c,10,CNY,g1,x\n").encode("utf-16-le"), ["UTF-16 without a byte-order mark"]),
    (b"PK\x03\x04rest-of-a-workbook", ["zip file (an Excel workbook?)"]),
    ((HEADER + "deposit,c,10,CNY,g1,x\n").encode("utf-32"), ["the file is UTF-32"]),
    ((HEADER + 'deposit,c,10,CNY,g1,"' + "x" * 200_000 + '"\n').encode(),
     ["line 2, column memo: the field is longer than 131072 characters"]),
]


def test_unreadable_csv_files_are_refused_naming_the_problem_and_fix(db_url: str, engine: Engine,
                                                                     tmp_path: Path) -> None:
    for data, words in UNREADABLE:
        out = refused(db_url, engine, "ledger", "import", _csv(tmp_path, "bad.csv", data))
        for word in words:
            assert word in out.stderr, out.stderr


def test_nul_bytes_in_csv_are_refused_with_line_and_column(db_url: str, engine: Engine,
                                                           tmp_path: Path) -> None:
    data = (HEADER + "deposit,c\x001,10,CNY,n1,\ndeposit,c1,10,CNY,n2,memo\x00\n").encode()
    before = fingerprint(engine)
    out = invoke(db_url, "ledger", "import", _csv(tmp_path, "nul.csv", data), "--json")
    assert out.exception is None and out.code == 2
    assert [(e["line"], e["column"]) for e in _errors(out)] == [(2, "customer"), (3, "memo")]
    assert all("NUL byte (0x00)" in e["reason"] for e in _errors(out))
    assert fingerprint(engine) == before


def test_an_import_refused_by_a_ledger_rule_exits_3(db_url: str, engine: Engine, tmp_path: Path) -> None:
    rule = _csv(tmp_path, "rule.csv", (HEADER + "deposit,r,10,CNY,r1,\nconsume,r,50,CNY,r2,\n").encode())
    before = fingerprint(engine)
    out = invoke(db_url, "ledger", "import", rule)
    assert out.exception is None and out.code == 3, out.text
    assert "line 3, column amount: consume of 50.00 CNY for customer r refused" in out.stderr
    assert '"exit_code": 3' in invoke(db_url, "ledger", "import", rule, "--json").stdout
    both = _csv(tmp_path, "both.csv", (HEADER + "deposit,r,10,CNY,r1,\nconsume,r,50,CNY,r2,\n"
                                       "deposit,r,1e5,CNY,r3,\n").encode())
    assert invoke(db_url, "ledger", "import", both).code == 2  # invalid input first: fix the file
    assert fingerprint(engine) == before


def _errors(out: Outcome) -> list[dict[str, object]]:
    import json

    return json.loads(out.stdout)["errors"]  # type: ignore[no-any-return]


# -- 17.3: keys and memos are text a person can see -------------------------------------------------

HIDDEN = [
    (("ledger", "deposit", "c\x1b[31m1", "5", "--currency", "CNY", "--key", "h1"),
     ["customer: 'c\\x1b[31m1' contains an ESCAPE character (U+001B) at character 2"]),
    (("ledger", "deposit", "c\x001", "5", "--currency", "CNY", "--key", "h2"), ["a NUL byte (U+0000)"]),
    (("ledger", "deposit", "c\u202e1", "5", "--currency", "CNY", "--key", "h3"), ["RIGHT-TO-LEFT OVERRIDE"]),
    (("ledger", "deposit", "c1", "5", "--currency", "CNY", "--key", "h\x1b]0;pwned\x07"),
     ["key: 'h\\x1b]0;pwned\\x07'"]),
    (("ledger", "deposit", "c1", "5", "--currency", "CNY", "--key", "h\u200b5"), ["ZERO WIDTH SPACE"]),
    (("ledger", "deposit", "c1", "5", "--currency", "CNY", "--key", "h6", "--memo", "x\x1b[2J"), ["memo:"]),
    (("ledger", "deposit", "c1", "5", "--currency", "CNY", "--key", "h7", "--memo", "a\nb"), ["a line break"
                                                                                              ]),
    (("ledger", "deposit", "c1", "5", "--currency", "CNY", "--key", "h8", "--source", "zoho:\x1b"),
     ["source:"]),
    (("ledger", "reverse", "1", "--key", "h\x1b9"), ["key:"]),
    (("ledger", "reverse", "1", "--key", "h10", "--memo", "\x9b31m"), ["memo:"]),
    (("ledger", "terms", "c\x1b1", "--currency", "CNY"), ["customer:"]),
]


def test_hidden_characters_in_keys_and_memos_are_refused(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", "c1", "50", "--currency", "CNY", "--key", "seed")
    for args, words in HIDDEN:
        out = refused(db_url, engine, *args)
        assert "\x1b" not in out.text and "\x9b" not in out.text and "\x00" not in out.text
        for word in words:
            assert word in out.stderr, (args, out.stderr)


def test_stored_escapes_and_markup_reach_no_terminal_raw(db_url: str, engine: Engine) -> None:
    ok(db_url, "ledger", "deposit", "x[/]y", "5", "--currency", "CNY", "--key", "m[bold]1", "--memo",
       "[red]m[/]")
    ok(db_url, "ledger", "deposit", "old", "5", "--currency", "CNY", "--key", "o1")
    with engine.begin() as conn:  # what an older version (or another tool) may have stored
        conn.execute(text("UPDATE accounts SET customer_key = :k WHERE customer_key = 'old'"),
                     {"k": "old\x1b[31m\u202e"})
    outputs = [ok(db_url, "ledger", "accounts"), ok(db_url, "ledger", "accounts", "--json"),
               ok(db_url, "ledger", "history", "x[/]y"), ok(db_url, "ledger", "entry", "1"),
               ok(db_url, "ledger", "balance", "old\x1b[31m\u202e"),
               ok(db_url, "ledger", "balance", "old\x1b[31m\u202e", "--json")]
    refusal = invoke(db_url, "ledger", "consume", "old\x1b[31m\u202e", "1000", "--currency", "CNY", "--key",
                     "z")
    assert refusal.code == 2  # the key itself is refused now, before any lookup
    for out in [*outputs, refusal]:
        assert "\x1b" not in out.text and "\u202e" not in out.text, out.text
    assert "x[/]y" in outputs[0].stdout and "old\\x1b[31m\\u202e" in outputs[0].stdout
    assert "old\\u001b[31m\\u202e" in outputs[1].stdout  # JSON escapes, readable back as the same text
    assert "[red]m[/]" in outputs[2].stdout and "m[bold]1" in outputs[2].stdout
