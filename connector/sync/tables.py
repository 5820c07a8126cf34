"""Sync state tables (in the ledger database, so state commits with the postings it covers)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint
from sqlmodel import SQLModel

from connector.db.types import UTCDateTime
from connector.domain import Entity, Stream

md = SQLModel.metadata
K = 255  # key length

runs = Table(
    "sync_runs", md,
    Column("id", Integer, primary_key=True),
    Column("connection", String(K), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(20), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("pid", Integer),
    Column("stats", Text),
    Column("worker", String(K)),
    Column("trigger", String(16)),
    Column("reason", Text),
    Column("slot_at", UTCDateTime()),
    Index("ix_sync_runs_connection", "connection", "id"),
)
locks = Table(
    "sync_locks", md,
    Column("connection", String(K), primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(K), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("holder", String(K)),
    Column("heartbeat_at", UTCDateTime()),
    Column("lease_until", UTCDateTime()),
)
cursors = Table(
    "sync_cursors", md,
    Column("connection", String(K), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("cursor_at", UTCDateTime(), nullable=False),
    Column("run_id", Integer, nullable=False),
)
customers = Table(
    "sync_customers", md,
    Column("connection", String(K), primary_key=True),
    Column("crm_id", String(K), primary_key=True),
    Column("name", Text),
    Column("owner_id", String(K)),
    Column("owner_name", String(K)),
    Column("currency", String(3)),
    Column("fields", Text, nullable=False, default="{}"),
    Column("deleted_at", UTCDateTime()),
    Column("tier", String(64)),
    Column("modified_at", UTCDateTime()),
)
contracts = Table(
    "sync_contracts", md,
    Column("connection", String(K), primary_key=True),
    Column("crm_id", String(K), primary_key=True),
    Column("customer_id", String(K)),
    Column("currency", String(3)),
    Column("payload", Text, nullable=False),
    Column("deleted_at", UTCDateTime()),
    Column("modified_at", UTCDateTime()),
    Index("ix_sync_contracts_customer", "connection", "customer_id"),
)
items = Table(
    "sync_items", md,
    Column("connection", String(K), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("crm_id", String(K), primary_key=True),
    Column("customer_id", String(K)),
    Column("contract_id", String(K)),
    Column("currency", String(3)),
    Column("amount", String(40)),
    Column("at", UTCDateTime()),
    Column("fingerprint", String(64), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("entry_ids", Text, nullable=False, default="[]"),
    Column("status", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("event", String(32)),
    Column("event_at", UTCDateTime()),
    Column("modified_at", UTCDateTime()),
    Index("ix_sync_items_customer", "connection", "customer_id"),
)
sent = Table(
    "sync_fields", md,
    Column("connection", String(K), primary_key=True),
    Column("crm_id", String(K), primary_key=True),
    Column("field", String(K), primary_key=True),
    Column("value", Text),
    Column("run_id", Integer, nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False),
)
flags = Table(
    "sync_flags", md,
    Column("id", Integer, primary_key=True),
    Column("connection", String(K), nullable=False),
    Column("customer_id", String(K), nullable=False),
    Column("code", String(32), nullable=False),
    Column("marker", String(K), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("cleared_at", UTCDateTime()),
    Column("task_id", String(K)),
    Column("run_id", Integer, nullable=False),
    Index("ix_sync_flags_open", "connection", "customer_id", "cleared_at"),
)
outbox = Table(
    "sync_outbox", md,
    Column("id", Integer, primary_key=True),
    Column("connection", String(K), nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("module", String(K), nullable=False),
    Column("crm_id", String(K)),
    Column("marker", String(K)),
    Column("payload", Text, nullable=False),
    Column("evidence", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("answer", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_sync_outbox_pending", "connection", "status"),
)
errors = Table(
    "sync_errors", md,
    Column("id", Integer, primary_key=True),
    Column("connection", String(K), nullable=False),
    Column("record", String(K), nullable=False),
    Column("field", String(K), nullable=False, default=""),
    Column("stage", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("resolved_at", UTCDateTime()),
    UniqueConstraint("connection", "record", "stage", name="uq_sync_errors_record"),
)
api_usage = Table(
    "sync_api_usage", md,
    Column("connection", String(K), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("calls", Integer, nullable=False, default=0),
    Column("credits", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime(), nullable=False),
)


def table_of(stream: Stream) -> Table:
    """Where a stream's records are kept: the shared items table (with `kind`) or a table of their own."""
    if stream.item_kind is not None:
        return items
    return {Entity.CUSTOMER: customers, Entity.CONTRACT: contracts}[stream.entity]
