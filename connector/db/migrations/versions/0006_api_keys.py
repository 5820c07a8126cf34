"""API keys for `prepaid-sync serve`: the key id, name, scope and a SHA-256 hash of the secret.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `api_keys`."""
    c = sa.Column
    op.create_table("api_keys", c("id", sa.Integer, primary_key=True),
                    c("key_id", sa.String(32), nullable=False, unique=True),
                    c("name", sa.String(64), nullable=False, unique=True),
                    c("scope", sa.String(8), nullable=False),
                    c("secret_hash", sa.String(64), nullable=False),
                    c("created_at", UTCDateTime(), nullable=False), c("last_used_at", UTCDateTime()),
                    c("revoked_at", UTCDateTime()),
                    sa.CheckConstraint("scope IN ('read','write')", name="ck_api_keys_scope"))


def downgrade() -> None:
    """Drop `api_keys`."""
    op.drop_table("api_keys")
