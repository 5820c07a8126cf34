"""Fixtures: sandbox apps reached in-process or over loopback, and clients that never really sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fxiaoke_helpers import make_client

from connector.adapters.fxiaoke import FxiaokeAdapter
from connector.adapters.fxiaoke.sandbox import FxiaokeSandbox, SandboxApp, SandboxConfig


@pytest.fixture
def sandbox_app() -> Callable[..., SandboxApp]:
    """Factory for in-process sandbox tenants (no throttling unless asked)."""

    def factory(**options: Any) -> SandboxApp:
        """A fresh tenant."""
        options.setdefault("rate_limit", None)
        return SandboxApp(SandboxConfig(**options))

    return factory


@pytest.fixture
def small_tenant(sandbox_app: Callable[..., SandboxApp]) -> SandboxApp:
    """A seeded tenant of 120 customers."""
    return sandbox_app(seed=120)


@pytest.fixture
def adapter(small_tenant: SandboxApp) -> FxiaokeAdapter:
    """An adapter over the small tenant, in-process."""
    return FxiaokeAdapter(make_client(small_tenant))


@pytest.fixture
def loopback() -> Iterator[Callable[..., FxiaokeSandbox]]:
    """Factory for real loopback servers, stopped after the test."""
    started: list[FxiaokeSandbox] = []

    def factory(**options: Any) -> FxiaokeSandbox:
        """A started loopback server."""
        sandbox = FxiaokeSandbox(config=SandboxConfig(**options)).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()
