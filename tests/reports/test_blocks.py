"""Issue 14.5: the report read a block of accounts at a time, streamed as JSON, and statements written by
several processes, give exactly what one pass over everything gives."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from report_book import AS_OF, ATTRS, Book, d

from connector.compliance.rules import ComplianceRules
from connector.reports import build_report
from connector.reports.render import stream_json, to_json
from connector.statements import StatementLoader, to_html
from connector.statements.batch import split, write_all
from connector.timeutil import zone


@pytest.mark.parametrize("as_of", [AS_OF, d(2026, 5, 15)])
@pytest.mark.parametrize("forbid", [False, True])
def test_blocks_and_stream_match_one_pass(book: Book, as_of: datetime, forbid: bool) -> None:
    rules = ComplianceRules(forbid_forfeiture=forbid)
    whole = to_json(build_report(book.engine, as_of, attributes=ATTRS, rules=rules, block=10**9))
    assert to_json(build_report(book.engine, as_of, attributes=ATTRS, rules=rules, block=1)) == whole
    for block in (1, 2, 10**9):
        out = io.StringIO()
        stream_json(lambda sink: build_report(book.engine, as_of, attributes=ATTRS, rules=rules, sink=sink,
                                              block=block, top_n=1, within_days=3), out)
        expected = to_json(build_report(book.engine, as_of, attributes=ATTRS, rules=rules, top_n=1,
                                        within_days=3))
        assert out.getvalue() == expected


def test_split_never_cuts_a_customer() -> None:
    class Acc:
        def __init__(self, key: str) -> None:
            self.customer_key = key

    accounts = [Acc(k) for k in "aabbbcdddde"]
    for parts in range(1, 13):
        runs = split(accounts, parts)
        assert [a for run in runs for a in run] == accounts and len(runs) <= parts
        assert all(a[-1].customer_key != b[0].customer_key for a, b in zip(runs, runs[1:], strict=False))


def test_statements_in_several_processes_match_one(sqlite_book: Book, tmp_path: Path) -> None:
    loader = StatementLoader(sqlite_book.engine, None, d(2026, 7, 1), attributes=ATTRS, chunk=1)
    now = datetime(2026, 7, 1, tzinfo=UTC)

    def render(st: object) -> str:
        return to_html(st, "zh", zone("UTC", "tz", default="UTC"), now)  # type: ignore[arg-type]

    written = {}
    for jobs in (1, 3):
        out = tmp_path / f"j{jobs}"
        out.mkdir()
        count = write_all(loader, out, render, lambda key: f"{key}.html", jobs)
        written[jobs] = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
        assert count == len(written[jobs]) > 1
    assert written[1] == written[3]
