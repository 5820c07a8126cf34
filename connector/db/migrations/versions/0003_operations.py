"""Operations: run leases and heartbeats, the durable schedule, API budget use per day, the alert outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
K = 255


def upgrade() -> None:
    """Add lease columns to locks, trigger/worker/reason to runs, and the schedule, usage and alert tables."""
    c = sa.Column
    with op.batch_alter_table("sync_locks") as b:
        b.add_column(c("holder", sa.String(K)))
        b.add_column(c("heartbeat_at", UTCDateTime()))
        b.add_column(c("lease_until", UTCDateTime()))
    with op.batch_alter_table("sync_runs") as b:
        b.add_column(c("worker", sa.String(K)))
        b.add_column(c("trigger", sa.String(16)))
        b.add_column(c("reason", sa.Text))
        b.add_column(c("slot_at", UTCDateTime()))
    op.create_index("ix_sync_runs_connection", "sync_runs", ["connection", "id"])
    with op.batch_alter_table("sync_customers") as b:
        b.add_column(c("owner_name", sa.String(K)))  # reports group by the owner's name, not an id
    op.create_table("sync_schedule", c("connection", sa.String(K), primary_key=True),
                    c("spec", sa.String(K), nullable=False), c("next_run_at", UTCDateTime(), nullable=False),
                    c("slot_at", UTCDateTime()), c("claimed_by", sa.String(K)),
                    c("lease_until", UTCDateTime()), c("run_id", sa.Integer), c("last_run_at", UTCDateTime()),
                    c("last_status", sa.String(20)),
                    c("missed", sa.Integer, nullable=False, server_default="0"),
                    c("updated_at", UTCDateTime(), nullable=False))
    op.create_table("sync_api_usage", c("connection", sa.String(K), primary_key=True),
                    c("day", sa.String(10), primary_key=True),
                    c("calls", sa.Integer, nullable=False, server_default="0"),
                    c("credits", sa.Integer, nullable=False, server_default="0"),
                    c("updated_at", UTCDateTime(), nullable=False))
    op.create_table("ops_alerts", c("id", sa.Integer, primary_key=True),
                    c("connection", sa.String(K), nullable=False), c("event", sa.String(32), nullable=False),
                    c("channel", sa.String(64), nullable=False), c("run_id", sa.Integer),
                    c("payload", sa.Text, nullable=False), c("status", sa.String(16), nullable=False),
                    c("attempts", sa.Integer, nullable=False, server_default="0"),
                    c("next_attempt_at", UTCDateTime(), nullable=False), c("last_error", sa.Text),
                    c("created_at", UTCDateTime(), nullable=False), c("sent_at", UTCDateTime()))
    op.create_index("ix_ops_alerts_due", "ops_alerts", ["status", "next_attempt_at"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("ix_ops_alerts_due", "ops_alerts")
    for name in ("ops_alerts", "sync_api_usage", "sync_schedule"):
        op.drop_table(name)
    with op.batch_alter_table("sync_customers") as b:
        b.drop_column("owner_name")
    op.drop_index("ix_sync_runs_connection", "sync_runs")
    with op.batch_alter_table("sync_runs") as b:
        for col in ("slot_at", "reason", "trigger", "worker"):
            b.drop_column(col)
    with op.batch_alter_table("sync_locks") as b:
        for col in ("lease_until", "heartbeat_at", "holder"):
            b.drop_column(col)
