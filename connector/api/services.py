"""What the routes work with, built once per app: the engine, the ledger, the key store, the customer
directory. This is the one place the API constructs its `Ledger`: with group commit, so the concurrent
postings of one process share a transaction and a durable commit (`connector.ledger.group`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from sqlalchemy import Engine

from connector.api.directory import Directory
from connector.api.keys import KeyStore
from connector.compliance import DepositGuard
from connector.ledger import Ledger


@dataclass
class Services:
    """The app's collaborators (on `app.state.services`)."""

    engine: Engine
    ledger: Ledger
    keys: KeyStore
    directory: Directory
    config: str | Path | None = None


def build_services(engine: Engine, config: str | Path | None = None) -> Services:
    """Services on `engine`; `config` names the config file (compliance switch, connections)."""
    # The one Ledger of the API, with the group commit of issue 14.2: concurrent posters of this process
    # share transactions and durable commits.
    ledger = Ledger(engine, deposit_guard=DepositGuard(config=config), group_commit=True)
    return Services(engine, ledger, KeyStore(engine), Directory(engine, config), config)


async def services(request: Request) -> Services:
    """FastAPI dependency: the app's services (async: it only reads app state, so FastAPI calls it on the
    event loop instead of sending it to the thread pool)."""
    found: Services = request.app.state.services
    return found
