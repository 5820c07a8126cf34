"""What the routes work with, built once per app: the engine, the ledger, the key store, the customer
directory. This is the one place the API constructs its `Ledger` (a switch to a grouped-commit ledger
for concurrent posters is a change here only)."""

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
    # The one Ledger of the API. With the opt-in group commit of issue 14.2 (branch i14-post) merged,
    # concurrent posters share transactions with `Ledger(..., group_commit=True)`: this line is the switch.
    ledger = Ledger(engine, deposit_guard=DepositGuard(config=config))
    return Services(engine, ledger, KeyStore(engine), Directory(engine, config), config)


def services(request: Request) -> Services:
    """FastAPI dependency: the app's services."""
    found: Services = request.app.state.services
    return found
