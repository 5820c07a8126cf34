"""Shared CLI plumbing: the root `--db` option, output in rich tables or one JSON document, exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import Engine

from connector import visible
from connector.config import Settings
from connector.errors import ConnectorError
from connector.ledger.db import make_engine

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class State:
    """Options given to the root command."""

    db: str | None = None


state = State()


def config_db(settings: Settings) -> Engine:
    """The database of a command that reads the config: `--db` if given, else the config's `database_url`."""
    return make_engine(state.db or settings.database_url)


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
        err.print(Text.assemble(("error: ", "bold red"), visible.escape(str(exc))), highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def run(as_json: bool, action: Callable[[], T]) -> T:
    """Call `action` under `handled`."""
    with handled(as_json):
        return action()
    raise AssertionError("unreachable")  # pragma: no cover
