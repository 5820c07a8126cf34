"""Shared CLI plumbing: the root `--db`/`--config` options and every command's database, output in rich tables
or one JSON document, exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import Engine

from connector import visible
from connector.config import choose_database
from connector.errors import ConnectorError
from connector.db.engine import open_database, sqlite_path

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class State:
    """Options given to the root command."""

    db: str | None = None
    config: str | None = None


state = State()


def database(config: str | Path | None = None, *, write: bool) -> Engine:
    """The database of any command, by the one rule (`connector.config.choose_database`): `--db`, else
    $PREPAID_SYNC_DB, else the config file's `database_url`, else ./prepaid-sync.db. `config` is the
    command's own `--config` (else the root one). A command that only reads (`write=False`) never creates
    a database."""
    choice = choose_database(state.db, config or state.config)
    path = sqlite_path(choice.url)
    new = write and path is not None and not path.exists()
    engine = open_database(choice.url, source=choice.source, create=write)
    if new:
        err.print(f"created a new database at {path} ({choice.source})", markup=False, highlight=False,
                  soft_wrap=True)
    return engine


def emit_json(data: Any) -> None:
    """Print exactly one JSON document on stdout (control characters in strings escaped, see `visible`)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n".join(visible.escape(line, json=True) for line in text.split("\n")) + "\n")


def plain(value: Any) -> Text:
    """Data for a table cell or a message: never read as markup, control characters shown escaped."""
    return Text(visible.escape("" if value is None else str(value)))


@contextmanager
def handled(as_json: bool) -> Iterator[None]:
    """Turn our errors into a clear message and the documented exit code (2 input, 3 rule)."""
    try:
        yield
    except ConnectorError as exc:
        if as_json:
            emit_json(exc.to_dict())
        err.print(Text.assemble(("error: ", "bold red"), visible.escape(str(exc))), highlight=False,
                  soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def run(as_json: bool, action: Callable[[], T]) -> T:
    """Call `action` under `handled`."""
    with handled(as_json):
        return action()
    raise AssertionError("unreachable")  # pragma: no cover
