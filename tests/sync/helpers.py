"""Helpers for sync tests: engines wired to in-process sandboxes (driven by the suite's fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from connector.adapters.fxiaoke import FxiaokeAdapter, FxiaokeAuth, FxiaokeClient, FxiaokeCredentials
from connector.adapters.fxiaoke.adapter import FxiaokeTaskTarget
from connector.adapters.fxiaoke.sandbox import SandboxApp, SandboxConfig, SandboxTransport
from connector.adapters.http import RetryPolicy
from connector.adapters.zoho import ZohoAdapter, ZohoAuth, ZohoAuthConfig, ZohoClient
from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.db.engine import make_engine
from connector.mapping import load_mapping
from connector.mapping.loader import DEFAULTS
from connector.sync import SyncEngine
from connector.sync.pull import specs

from clock import Clock  # noqa: F401 - the suite's one fake clock, re-exported for the sync tests

FX_BASE = "http://fxiaoke.sandbox.test"


def zoho_engine(db_url: str, seed: int = 40, clock: Clock | None = None, *,
                deletion_check: timedelta = timedelta(minutes=60), tick: float | None = None,
                **sandbox_kw: Any) -> tuple[SyncEngine, ZohoSandbox]:
    """A sync engine on a seeded in-process Zoho sandbox (`/deleted` read at most every `deletion_check`).

    With `tick`, every request to the sandbox takes `tick` seconds of the test clock, and the client's
    token cache reads that clock too (so tokens expire as calls go by, without sleeping); a test may change
    `sb.tick` between runs."""
    clock = clock or Clock()
    sb = ZohoSandbox(seed=seed, clock=clock.seconds, **sandbox_kw)
    session = sb.session()
    mapping = load_mapping(DEFAULTS / "zoho.yaml")
    config = ZohoAuthConfig(accounts_url=sb.accounts_url, api_domain=sb.api_domain)
    auth = ZohoAuth.from_env(config, session=session, environ=sb.env())
    if tick is not None:
        handle = sb.app.handle
        sb.tick = tick  # type: ignore[attr-defined]

        def slow(*args: Any) -> Any:
            clock.advance(seconds=sb.tick)  # type: ignore[attr-defined]
            return handle(*args)

        sb.app.handle = slow  # type: ignore[method-assign]
        auth.clock = clock.seconds
    client = ZohoClient(auth, session=session, retry=RetryPolicy(max_attempts=6, sleep=lambda s: None))
    adapter = ZohoAdapter(client, specs={v.entity: v for v in specs(mapping).values()},
                          deletion_check_interval=deletion_check)
    engine = SyncEngine("zoho", make_engine(db_url), adapter, mapping, clock=clock)
    return engine, sb


class SandboxTime:
    """The engine's clock read from a Fxiaoke sandbox clock (so both agree); `advance` moves both."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.app.clock.now(), UTC)

    def advance(self, **kw: float) -> None:
        """Move time forward."""
        self.app.clock.advance(timedelta(**kw).total_seconds())


def fxiaoke_engine(db_url: str, seed: int = 40, **config_kw: Any) -> tuple[SyncEngine, SandboxApp]:
    """A sync engine on a seeded in-process Fxiaoke sandbox (its clock advances instead of sleeping)."""
    app = SandboxApp(SandboxConfig(seed=seed, **config_kw))
    session = requests.Session()
    session.mount(FX_BASE, SandboxTransport(app))
    creds = app.credentials
    auth = FxiaokeAuth(FX_BASE, FxiaokeCredentials(creds.app_id, creds.app_secret, creds.permanent_code),
                       session=session, clock=app.clock.now)
    client = FxiaokeClient(FX_BASE, auth, session=session, open_user_id=creds.open_user_id,
                           retry=RetryPolicy(max_attempts=8, sleep=app.clock.advance),
                           clock=app.clock.now, sleep=app.clock.advance)
    mapping = load_mapping(DEFAULTS / "fxiaoke.yaml")
    adapter = FxiaokeAdapter(client, task_target=FxiaokeTaskTarget.custom_object(mapping.tasks.target or ""))
    engine = SyncEngine("fx", make_engine(db_url), adapter, mapping, clock=SandboxTime(app))
    return engine, app
