"""The push channel of each connection (in the ledger database, so several `serve` processes share it)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text
from sqlmodel import SQLModel

from connector.db.types import UTCDateTime

md = SQLModel.metadata
K = 255  # key length

# One row per connection whose push is enabled. The verification token is a secret: only its SHA-256 is
# kept (the CRM sends the token back in every call, which is then hashed and compared).
channels = Table(
    "push_channels", md,
    Column("connection", String(K), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("notify_url", Text, nullable=False),
    Column("resources", Text, nullable=False, default=""),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("enabled_at", UTCDateTime(), nullable=False),
    Column("renewed_at", UTCDateTime()),
    Column("last_notice_at", UTCDateTime()),
    Column("notices", Integer, nullable=False, default=0),
    Column("refused", Integer, nullable=False, default=0),
    Column("last_error", Text),
)
