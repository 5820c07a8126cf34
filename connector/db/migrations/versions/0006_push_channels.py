"""Push channels: one CRM change-notification channel per connection (`prepaid-sync notifications`).

The revision id is a placeholder: the branch that adds it was written beside another that also followed
0004 (`0005_api_keys`, `prepaid-sync serve`); it follows that one here, and the chain is put in order when
they are merged.

Revision ID: 0006_push
Revises: 0005_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.db.types import UTCDateTime

revision = "0006_push"
down_revision = "0005_api_keys"
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
