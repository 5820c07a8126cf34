"""CLI papercuts: `-c` means one thing, flags show no type, help shows bracketed words, a rate-limited run
says it waits and for how long."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.adapters.zoho.sandbox.app import Reply, json_reply
from connector.cli import app
from connector.cli.progress import RunProgress

runner = CliRunner()


def commands() -> Iterator[tuple[list[str], Any]]:
    """Every command and group of the CLI, with the words that invoke it (typer's own click, duck-typed)."""
    def walk(words: list[str], cmd: Any) -> Iterator[tuple[list[str], Any]]:
        yield words, cmd
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk([*words, name], sub)
    yield from walk([], typer.main.get_command(app))


ALL = list(commands())


def test_c_means_currency_everywhere() -> None:
    uses = {
        " ".join(words): [o for o in p.opts if o.startswith("--")]
        for words, cmd in ALL
        for p in cmd.params if "-c" in getattr(p, "opts", [])
    }
    assert uses and all(long == ["--currency"] for long in uses.values()), uses


@pytest.mark.parametrize(("words", "cmd"), ALL, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_help_shows_no_bool_type_and_every_bracketed_word(words: list[str], cmd: Any) -> None:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stdout
    assert "<bool>" not in result.stdout
    flat = " ".join(result.stdout.split())
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    for bracketed in re.findall(r"\[[^\]\s]+\]", " ".join(texts)):
        assert bracketed in flat, (bracketed, flat)


def test_init_and_schedule_messages_show_bracketed_words(tmp_path: Path) -> None:
    res = runner.invoke(app, ["schedule", "--once", "--config", str(_no_schedule(tmp_path))])
    assert res.exit_code == 2 and "[connections.NAME]" in res.stdout


def _no_schedule(tmp_path: Path) -> Path:
    cfg = tmp_path / "prepaid-sync.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path}/s.db"\n[connections.z]\ncrm = "zoho"\n'
                   f'mapping = "m.yaml"\n')
    return cfg


class _Throttled:
    """The sandbox answers the first write with 429 and Retry-After, as Zoho does under its concurrency
    limit."""

    def __init__(self, sb: ZohoSandbox) -> None:
        self.handle = sb.app.handle
        self.throttled = 0

    def __call__(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Reply:
        if method == "PUT" and not self.throttled:
            self.throttled += 1
            return json_reply(429, {"code": "TOO_MANY_REQUESTS", "details": {}, "status": "error",
                                    "message": "the concurrency limit of the user for the app is exceeded"},
                              {"Retry-After": "1"})
        return self.handle(method, path, query, headers, body)


def test_a_rate_limited_write_says_it_waits_and_how_long(tmp_path: Path) -> None:
    saved = dict(os.environ)
    try:
        with ZohoSandbox(seed=8) as sb:
            throttle = _Throttled(sb)
            sb.app.handle = throttle  # type: ignore[method-assign]
            assert runner.invoke(app, ["init", "--sandbox", sb.api_domain, "--dir",
                                       str(tmp_path)]).exit_code == 0
            res = runner.invoke(app, ["sync", "run", "--config", str(tmp_path / "prepaid-sync.toml")])
        assert res.exit_code == 0, res.stdout + res.stderr
        assert throttle.throttled == 1
        assert "write: waiting 1s (rate limited by zoho)" in res.stderr
        assert json.loads(runner.invoke(app, ["runs", "--config", str(tmp_path / "prepaid-sync.toml"),
                                              "--json"]).stdout)["runs"][0]["status"] == "ok"
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_wait_shows_a_countdown_on_the_stage_it_holds_up() -> None:
    now = [0.0]
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with RunProgress(console, delay=1.0, clock=lambda: now[0], transient=False) as progress:
        progress("pull customers", 10, 10)
        progress("write", 3, 40)
        progress.waiting(12.0, "rate limited by zoho")
        assert progress.bars is not None  # a wait shows the bars at once
        now[0] = 5.0
        assert progress.wait_note(progress.bars.tasks[1]) == "waiting 7s (rate limited by zoho)"
        assert progress.wait_note(progress.bars.tasks[0]) == ""
        now[0] = 13.0
        assert progress.wait_note(progress.bars.tasks[1]) == ""
        now[0] = 6.0
    assert "waiting 6s (rate limited by zoho)" in buf.getvalue()
