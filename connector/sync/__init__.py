"""The vendor-free sync engine: pull -> ledger -> reconcile -> write back, with an outbox."""

from connector.sync.context import RunReport
from connector.sync.runner import DryRunAdapter, SyncEngine

__all__ = ["DryRunAdapter", "RunReport", "SyncEngine"]
