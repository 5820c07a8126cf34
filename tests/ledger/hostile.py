"""Helpers for the hostile-input tests: run the CLI in-process and fingerprint the ledger database."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from connector.cli import app

TABLES = ("accounts", "lots", "entries", "allocations", "postings", "terms")
runner = CliRunner()


@dataclass
class Outcome:
    """One CLI call: exit code, output and any exception the CLI did not turn into an answer."""

    code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def invoke(url: str, *args: str) -> Outcome:
    """`prepaid-sync --db URL ARGS...` in this process (typer's CliRunner)."""
    result = runner.invoke(app, ["--db", url, *args])
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exc)


def fingerprint(engine: Engine) -> str:
    """A hash of every ledger row, to show that a refusal wrote nothing."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            order = "key" if table == "postings" else "id"
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}")):
                digest.update(repr(tuple(row)).encode())
            digest.update(b"|")
    return digest.hexdigest()
