"""API keys (in the ledger database): a public key id, a scope, and only a hash of the secret."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, String, Table
from sqlmodel import SQLModel

from connector.db.types import UTCDateTime

md = SQLModel.metadata

api_keys = Table(
    "api_keys", md,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("scope", String(8), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    CheckConstraint("scope IN ('read','write')", name="ck_api_keys_scope"),
)
