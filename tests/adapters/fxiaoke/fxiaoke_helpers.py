"""Helpers shared by the Fxiaoke tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

from typing import Any

import requests

from connector.adapters.fxiaoke import FxiaokeAuth, FxiaokeClient, FxiaokeCredentials
from connector.adapters.fxiaoke.sandbox import SandboxApp, SandboxTransport
from connector.adapters.http import RetryPolicy

BASE = "http://fxiaoke.sandbox.test"


def make_client(app: SandboxApp, base_url: str = BASE, *, session: requests.Session | None = None,
                pace: tuple[int, float] | None = None, max_attempts: int = 8,
                **kw: Any) -> FxiaokeClient:
    """A client whose sleeps advance the sandbox clock instead of waiting."""
    if session is None:
        session = requests.Session()
        session.mount(base_url, SandboxTransport(app))
    creds = app.credentials
    auth = FxiaokeAuth(base_url, FxiaokeCredentials(creds.app_id, creds.app_secret, creds.permanent_code),
                       session=session, clock=app.clock.now)
    sleep = app.clock.advance
    return FxiaokeClient(
        base_url, auth, session=session, open_user_id=creds.open_user_id, pace=pace,
        retry=RetryPolicy(max_attempts=max_attempts, initial_delay=0.5, max_delay=30,
                          sleep=sleep), clock=app.clock.now, sleep=sleep, **kw)
