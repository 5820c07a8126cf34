"""The vendor-free sync engine: pull -> ledger -> reconcile -> write back, with an outbox."""

from connector.sync.context import RunReport
from connector.sync.dryrun import DryRunAdapter
from connector.sync.runner import SyncEngine

__all__ = ["DryRunAdapter", "RunReport", "SyncEngine"]
