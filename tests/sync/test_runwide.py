"""A condition no later call of a run can escape stops the run once, with its reason and resume time.

The token-refresh limit, credentials the CRM refuses, a used-up allowance: the run ends at once
(`interrupted`, `failed` or `budget`), says why and when it can go on, records no per-record error for
it, leaves what it did not send in the outbox, and the next run after that time completes it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from helpers import Clock, fxiaoke_engine, zoho_engine
from sqlalchemy import func, select

from connector.sync import SyncEngine
from connector.sync import tables as t


def _outbox(eng: SyncEngine) -> dict[str, int]:
    with eng.engine.connect() as conn:
        return dict(conn.execute(select(t.outbox.c.status, func.count()).group_by(t.outbox.c.status)).all())


def _errors_at(report: Any, *stages: str) -> list[dict[str, str]]:
    return [e for e in report.errors if e["stage"] in stages]


def _on_first(stage: str, action: Any) -> Any:
    """A progress callback that runs `action` once, when the run first reaches `stage`."""
    done: list[bool] = []

    def progress(name: str, _done: int, _total: int | None) -> None:
        if name == stage and not done:
            done.append(True)
            action()

    return progress


def test_zoho_3s_tokens_reach_the_refresh_limit_the_run_stops_once_and_the_next_completes(
        tmp_path: Path) -> None:
    clock = Clock()
    # Tokens live 3 s and every call takes 2 s: one call per token, so the client's guard against Zoho's
    # 10-refreshes-per-10-minutes limit is reached in the middle of the write-back.
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/r.db", seed=300, clock=clock, token_ttl=3, tick=2.0)
    first = eng.run()
    assert first.status == "interrupted", first.reason
    assert "10 refreshes in the last 600 s already" in first.reason and "***" not in first.reason
    assert first.resumes_at is not None and clock() < first.resumes_at <= clock() + timedelta(seconds=600)
    assert f"resumes after {first.resumes_at:%Y-%m-%d %H:%M:%S} UTC" in first.reason
    assert not _errors_at(first, "write", "task", "run")  # one stop, not an error per record
    left = _outbox(eng)
    assert "failed" not in left and left.get("planned", 0) + left.get("sending", 0) > 0

    clock.now = first.resumes_at + timedelta(minutes=1)
    sb.tick = 0.1  # calls as fast as they usually are: a 3 s token serves many of them
    second = eng.run()
    assert second.status in ("ok",
                             "partial") and not _errors_at(second, "write", "task", "run"), second.reason
    assert set(_outbox(eng)) <= {"ok", "superseded"}


def test_zoho_credentials_revoked_mid_push_fail_the_run_once(tmp_path: Path) -> None:
    eng, sb = zoho_engine(f"sqlite:///{tmp_path}/r.db", seed=150)
    good = sb.config.refresh_token

    def revoke() -> None:
        sb.config.refresh_token = "revoked-in-the-console"
        sb.app.expire_tokens()

    eng.progress = _on_first("write", revoke)
    first = eng.run()
    assert first.status == "failed"
    assert first.reason.startswith(
        "the CRM refused the connection's credentials: zoho invalid_code: "
        "Zoho token refresh failed: the refresh token in ZOHO_REFRESH_TOKEN is invalid or revoked")
    assert "fix it, then run again" in first.reason and first.resumes_at is None
    assert not _errors_at(first, "run")  # the run's reason, not a record error
    assert not _errors_at(first, "write", "task")
    assert "failed" not in _outbox(eng)

    sb.config.refresh_token = good
    eng.progress = None
    second = eng.run()
    assert second.status in ("ok", "partial") and not _errors_at(second, "write", "task", "run")
    assert set(_outbox(eng)) <= {"ok", "superseded"}


def test_fxiaoke_token_endpoint_throttled_mid_push_interrupts_until_its_window(tmp_path: Path) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/r.db", seed=60)

    def throttle() -> None:
        app.tokens.expire_all()
        app.tokens.per_minute = 0  # every token request is answered 14001

    eng.progress = _on_first("write", throttle)
    first = eng.run()
    assert first.status == "interrupted", first.reason
    assert first.reason.startswith("no new access token can be had for now: fxiaoke 14001: ")
    assert first.resumes_at is not None
    assert not _errors_at(first, "write", "task", "run")
    assert "failed" not in _outbox(eng)

    app.tokens.per_minute = 10
    eng.progress = None
    second = eng.run()
    assert second.status in ("ok", "partial") and not _errors_at(second, "write", "task", "run")
    assert set(_outbox(eng)) <= {"ok", "superseded"}


def test_fxiaoke_credentials_refused_mid_push_fail_the_run_once(tmp_path: Path) -> None:
    eng, app = fxiaoke_engine(f"sqlite:///{tmp_path}/r.db", seed=60)
    good = app.credentials

    def rotate_secret() -> None:
        app.credentials = good.__class__(**{**good.__dict__, "app_secret": "rotated" + good.app_secret[7:]})
        app.tokens.expire_all()

    eng.progress = _on_first("write", rotate_secret)
    first = eng.run()
    assert first.status == "failed" and first.resumes_at is None
    assert first.reason.startswith("the CRM refused the connection's credentials: fxiaoke 10006: ")
    assert not _errors_at(first, "run", "write", "task")  # the run's reason, not a record error

    app.credentials = good
    eng.progress = None
    second = eng.run()
    assert second.status in ("ok", "partial") and not _errors_at(second, "write", "task", "run")
