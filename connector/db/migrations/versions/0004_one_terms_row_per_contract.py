"""One terms row per contract: customer-level rows stop copying a contract's dates and amount; `active`.

Until now the sync wrote every contract twice: once under its own `contract_ref` and once as the
customer-level row (`contract_ref` ''), carrying the same agreed amount, due date and validity. Every
reader that walked the terms (the report's punctuality) saw each contract twice. The customer-level row
keeps what really is per customer (refund policy and fee, credit line, low-balance threshold); its
copied contract fields are cleared where the customer has contract rows. A customer whose terms were
set by hand (no contract rows) keeps its row as it is. Only `terms` changes: entries, lots and
postings, the ledger's history, are not touched.

`active` says whether a contract is live (not ended or lost in the CRM); the shared standing
(`connector/ledger/standing.py`) looks at live contracts only.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `terms.active`; clear the contract fields copied into customer-level rows."""
    with op.batch_alter_table("terms") as b:
        b.add_column(sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
    op.execute(
        "UPDATE terms SET agreed_amount = NULL, due_date = NULL, valid_from = NULL, valid_until = NULL "
        "WHERE contract_ref = '' AND EXISTS (SELECT 1 FROM terms AS c "
        "WHERE c.customer_key = terms.customer_key AND c.currency = terms.currency AND c.contract_ref <> '')")


def downgrade() -> None:
    """Drop `terms.active` (the cleared copies are not restored: they were duplicates)."""
    with op.batch_alter_table("terms") as b:
        b.drop_column("active")
