"""Fixtures for the Zoho tests: a no-sleep retry policy, auth/client factories, a loopback sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from zoho_helpers import ACCOUNTS, API, CLIENT_SECRET, REFRESH_TOKEN, TOKEN_URL, START, FakeClock  # noqa: F401

from connector.adapters.http import RetryPolicy
from connector.adapters.zoho.auth import ZohoAuth, ZohoAuthConfig, ZohoCredentials
from connector.adapters.zoho.client import ZohoClient
from connector.adapters.zoho.sandbox import ZohoSandbox


@pytest.fixture
def sleeps() -> list[float]:
    """Waits the retry policy asked for (never really slept)."""
    return []


@pytest.fixture
def retry(sleeps: list[float]) -> RetryPolicy:
    """A retry policy that records its waits instead of sleeping."""
    return RetryPolicy(max_attempts=4, initial_delay=0.5, max_delay=8.0, jitter=False, sleep=sleeps.append)


@pytest.fixture
def clock_start() -> float:
    """Where the suite's fake `clock` starts for the Zoho tests."""
    return START


@pytest.fixture
def make_client(retry: RetryPolicy, clock: FakeClock) -> Callable[..., ZohoClient]:
    """Build a client against the fake US data centre (for `responses` tests)."""

    def build(**kwargs: Any) -> ZohoClient:
        creds = ZohoCredentials("1000.CLIENTID", SecretStr(CLIENT_SECRET), SecretStr(REFRESH_TOKEN))
        auth = ZohoAuth(ZohoAuthConfig(data_center="us"), creds, session=requests.Session(),
                        clock=clock.seconds)
        return ZohoClient(auth, retry=kwargs.pop("retry", retry), **kwargs)

    return build


@pytest.fixture
def sandbox() -> Iterator[ZohoSandbox]:
    """A seeded loopback sandbox (real HTTP), no faults."""
    with ZohoSandbox(seed=60) as sb:
        yield sb
