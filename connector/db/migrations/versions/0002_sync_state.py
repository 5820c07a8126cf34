"""Sync state: runs, locks, cursors, pulled records, last-sent fields, flags, outbox, errors.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.db.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
K = 255


def _t() -> UTCDateTime:
    return UTCDateTime()


def upgrade() -> None:
    """Create the sync tables."""
    c = sa.Column
    op.create_table("sync_runs", c("id", sa.Integer, primary_key=True),
                    c("connection", sa.String(K), nullable=False), c("started_at", _t(), nullable=False),
                    c("finished_at", _t()), c("status", sa.String(20), nullable=False),
                    c("dry_run", sa.Boolean, nullable=False), c("pid", sa.Integer), c("stats", sa.Text))
    op.create_table("sync_locks", c("connection", sa.String(K), primary_key=True),
                    c("run_id", sa.Integer, nullable=False), c("pid", sa.Integer, nullable=False),
                    c("host", sa.String(K), nullable=False), c("acquired_at", _t(), nullable=False))
    op.create_table("sync_cursors", c("connection", sa.String(K), primary_key=True),
                    c("stream", sa.String(64), primary_key=True), c("cursor_at", _t(), nullable=False),
                    c("run_id", sa.Integer, nullable=False))
    op.create_table("sync_customers", c("connection", sa.String(K), primary_key=True),
                    c("crm_id", sa.String(K), primary_key=True), c("name", sa.Text),
                    c("owner_id", sa.String(K)), c("currency", sa.String(3)),
                    c("fields", sa.Text, nullable=False), c("deleted_at", _t()), c("tier", sa.String(64)),
                    c("modified_at", _t()))
    op.create_table("sync_contracts", c("connection", sa.String(K), primary_key=True),
                    c("crm_id", sa.String(K), primary_key=True), c("customer_id", sa.String(K)),
                    c("currency", sa.String(3)), c("payload", sa.Text, nullable=False), c("deleted_at", _t()),
                    c("modified_at", _t()))
    op.create_index("ix_sync_contracts_customer", "sync_contracts", ["connection", "customer_id"])
    op.create_table("sync_items", c("connection", sa.String(K), primary_key=True),
                    c("kind", sa.String(16), primary_key=True), c("crm_id", sa.String(K), primary_key=True),
                    c("customer_id", sa.String(K)), c("contract_id", sa.String(K)),
                    c("currency", sa.String(3)), c("amount", sa.String(40)), c("at", _t()),
                    c("fingerprint", sa.String(64), nullable=False), c("version", sa.Integer, nullable=False),
                    c("entry_ids", sa.Text, nullable=False), c("status", sa.String(16), nullable=False),
                    c("payload", sa.Text, nullable=False), c("event", sa.String(32)), c("event_at", _t()),
                    c("modified_at", _t()))
    op.create_index("ix_sync_items_customer", "sync_items", ["connection", "customer_id"])
    op.create_table("sync_fields", c("connection", sa.String(K), primary_key=True),
                    c("crm_id", sa.String(K), primary_key=True), c("field", sa.String(K), primary_key=True),
                    c("value", sa.Text), c("run_id", sa.Integer, nullable=False),
                    c("sent_at", _t(), nullable=False))
    op.create_table("sync_flags", c("id", sa.Integer, primary_key=True),
                    c("connection", sa.String(K), nullable=False),
                    c("customer_id", sa.String(K), nullable=False), c("code", sa.String(32), nullable=False),
                    c("marker", sa.String(K), nullable=False), c("detail", sa.Text, nullable=False),
                    c("opened_at", _t(), nullable=False), c("cleared_at", _t()), c("task_id", sa.String(K)),
                    c("run_id", sa.Integer, nullable=False))
    op.create_index("ix_sync_flags_open", "sync_flags", ["connection", "customer_id", "cleared_at"])
    op.create_table("sync_outbox", c("id", sa.Integer, primary_key=True),
                    c("connection", sa.String(K), nullable=False), c("run_id", sa.Integer, nullable=False),
                    c("kind", sa.String(16), nullable=False), c("module", sa.String(K), nullable=False),
                    c("crm_id", sa.String(K)), c("marker", sa.String(K)), c("payload", sa.Text,
                                                                            nullable=False),
                    c("evidence", sa.Text, nullable=False), c("status", sa.String(16), nullable=False),
                    c("attempts", sa.Integer, nullable=False), c("answer", sa.Text),
                    c("created_at", _t(), nullable=False), c("updated_at", _t(), nullable=False))
    op.create_index("ix_sync_outbox_pending", "sync_outbox", ["connection", "status"])
    op.create_table("sync_errors", c("id", sa.Integer, primary_key=True),
                    c("connection", sa.String(K), nullable=False), c("record", sa.String(K), nullable=False),
                    c("field", sa.String(K), nullable=False), c("stage", sa.String(16), nullable=False),
                    c("reason", sa.Text, nullable=False), c("run_id", sa.Integer, nullable=False),
                    c("first_seen", _t(), nullable=False), c("last_seen", _t(), nullable=False),
                    c("attempts", sa.Integer, nullable=False), c("resolved_at", _t()),
                    sa.UniqueConstraint("connection", "record", "stage", name="uq_sync_errors_record"))


def downgrade() -> None:
    """Drop the sync tables."""
    for name in ("sync_errors", "sync_outbox", "sync_flags", "sync_fields", "sync_items", "sync_contracts",
                 "sync_customers", "sync_cursors", "sync_locks", "sync_runs"):
        op.drop_table(name)
