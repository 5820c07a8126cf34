"""Structured logs: JSON lines, run and connection on every line, secrets masked everywhere."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connector import logs
from connector.cli import app

TOKEN = "1000.abcdef0123456789abcdef.0123456789abcdef01"
log = logging.getLogger("connector.test")


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    logs.reset_logging()
    logs.bind_worker(None)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def json_stream() -> io.StringIO:
    stream = io.StringIO()
    logs.setup_logging("json", "DEBUG", stream=stream)
    return stream


def test_every_line_inside_a_run_carries_it() -> None:
    stream = json_stream()
    log.info("before")
    with logs.run_context(run_id=7, connection="acme"):
        log.info("pulled %d records", 12, extra={"stream": "payments"})
        with logs.run_context(connection="acme-eu"):
            log.warning("nested")
        log.debug("after nested")
    log.info("after")
    got = lines(stream)
    assert [(d["message"], d["run_id"], d["connection"]) for d in got] == [
        ("before", None, None), ("pulled 12 records", 7, "acme"), ("nested", 7, "acme-eu"),
        ("after nested", 7, "acme"), ("after", None, None)]
    first = got[1]
    assert first["level"] == "INFO" and first["logger"] == "connector.test" and first["stream"] == "payments"
    assert first["ts"].endswith("Z") and "T" in first["ts"]


def test_threads_keep_their_own_run() -> None:
    stream = json_stream()
    barrier = threading.Barrier(2)

    def work(run_id: int) -> None:
        with logs.run_context(run_id=run_id, connection=f"c{run_id}"):
            barrier.wait()
            for i in range(20):
                log.info("tick %d", i)

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with logs.run_context(run_id=3, connection="c3"):
        helper = threading.Thread(target=logs.carry(lambda: log.info("from a helper thread")))
        helper.start()
        helper.join()
    got = lines(stream)
    assert len(got) == 41
    assert all(d["connection"] == f"c{d['run_id']}" for d in got)
    assert got[-1]["message"] == "from a helper thread" and got[-1]["run_id"] == 3


def test_secrets_are_masked_in_message_args_extras_and_exceptions() -> None:
    stream = json_stream()
    log.info(f"token refreshed: access_token={TOKEN}")
    log.warning("sent header %s", "Authorization: Zoho-oauthtoken xyz")
    log.info(
        "request", extra={
            "headers": {"Authorization": "Zoho-oauthtoken xyz"}, "url": f"x?access_token={TOKEN}",
            "client_secret": "s3cr3t-value"
        })
    try:
        raise RuntimeError(f"refresh failed for access_token={TOKEN}")
    except RuntimeError:
        log.exception("refresh failed, header Zoho-oauthtoken xyz")
    raw = stream.getvalue()
    assert TOKEN not in raw and "oauthtoken xyz" not in raw and "abcdef0123456789abcdef" not in raw
    got = lines(stream)
    assert got[0]["message"] == "token refreshed: access_token=***"
    assert got[1]["message"].startswith(
        "sent header Authorization: Zoho-oauthtoken ***")  # the scheme is no secret
    assert got[2]["headers"] == {"Authorization": "***"} and got[2]["client_secret"] == "***"
    assert "s3cr3t" not in raw
    assert "RuntimeError" in got[3]["exc"] and "Traceback" in got[3]["exc"]


def test_text_format_shows_connection_run_and_worker() -> None:
    stream = io.StringIO()
    logs.setup_logging("text", "INFO", stream=stream)
    logs.bind_worker("host-a:4242")
    with logs.run_context(run_id=12, connection="acme"):
        log.info("pulled %s", f"access_token={TOKEN}")
    log.debug("hidden at INFO")
    text = stream.getvalue()
    assert "connector.test [acme run=12 worker=host-a:4242] pulled access_token=***" in text
    assert "hidden" not in text and TOKEN not in text


def test_setup_is_idempotent() -> None:
    first = logs.setup_logging("text")
    second = logs.setup_logging("json", "WARNING")
    ours = [h for h in logging.getLogger().handlers if h is first or h is second]
    assert ours == [second] and logs.is_configured()
    assert isinstance(second.formatter, logs.JsonLinesFormatter)
    assert logging.getLogger("connector").level == logging.WARNING
    with pytest.raises(ValueError, match="log format"):
        logs.setup_logging("xml")


def test_cli_root_options_configure_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path}/l.db"
    assert runner.invoke(app,
                         ["--db", db, "db", "upgrade"]).exit_code == 0  # `runs` only reads: it creates none
    logs.reset_logging()
    res = runner.invoke(app, ["--db", db, "--log-format", "json", "--log-level", "debug", "runs", "--json"])
    assert res.exit_code == 0, res.stderr
    assert logs.is_configured() and logging.getLogger("connector").level == logging.DEBUG
    logs.reset_logging()
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    assert runner.invoke(app, ["--db", db, "runs", "--json"]).exit_code == 0
    assert logs.is_configured()


def test_default_warnings_are_masked_too(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path}/l.db", "db", "upgrade"]).exit_code == 0
    res = CliRunner().invoke(app, ["--db", f"sqlite:///{tmp_path}/l.db", "runs", "--json"])
    assert res.exit_code == 0 and not logs.is_configured()
    last = logging.lastResort
    assert last is not None and any(isinstance(f, logs.RunContextFilter) for f in last.filters)
    record = logging.LogRecord("connector.x", logging.WARNING, __file__, 1, "got %s",
                               (f"access_token={TOKEN}", ), None)
    assert last.filter(record) and record.getMessage() == "got access_token=***"
