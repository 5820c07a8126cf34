"""Operations tables: each connection's schedule slot and the alert outbox (in the ledger database)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text
from sqlmodel import SQLModel

from connector.db.types import UTCDateTime

md = SQLModel.metadata
K = 255  # key length

schedule = Table(
    "sync_schedule", md,
    Column("connection", String(K), primary_key=True),
    Column("spec", String(K), nullable=False),
    Column("next_run_at", UTCDateTime(), nullable=False),
    Column("slot_at", UTCDateTime()),
    Column("claimed_by", String(K)),
    Column("lease_until", UTCDateTime()),
    Column("run_id", Integer),
    Column("last_run_at", UTCDateTime()),
    Column("last_status", String(20)),
    Column("missed", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime(), nullable=False),
)
alerts = Table(
    "ops_alerts", md,
    Column("id", Integer, primary_key=True),
    Column("connection", String(K), nullable=False),
    Column("event", String(32), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("run_id", Integer),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Index("ix_ops_alerts_due", "status", "next_attempt_at"),
)
