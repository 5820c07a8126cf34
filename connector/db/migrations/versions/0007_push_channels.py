"""Push channels: one CRM change-notification channel per connection (`prepaid-sync notifications`).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
K = 255


def upgrade() -> None:
    """Add `push_channels`."""
    c = sa.Column
    op.create_table("push_channels", c("connection", sa.String(K), primary_key=True),
                    c("channel_id", sa.String(64), nullable=False),
                    c("token_sha256", sa.String(64), nullable=False),
                    c("notify_url", sa.Text, nullable=False),
                    c("resources", sa.Text, nullable=False, server_default=""),
                    c("expires_at", UTCDateTime(), nullable=False),
                    c("enabled_at", UTCDateTime(), nullable=False), c("renewed_at", UTCDateTime()),
                    c("last_notice_at", UTCDateTime()),
                    c("notices", sa.Integer, nullable=False, server_default="0"),
                    c("refused", sa.Integer, nullable=False, server_default="0"), c("last_error", sa.Text))


def downgrade() -> None:
    """Drop `push_channels`."""
    op.drop_table("push_channels")
