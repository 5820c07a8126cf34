"""Initial ledger schema: accounts, lots, entries, allocations, postings, terms.

Entries, allocations and postings are append-only: triggers refuse UPDATE and DELETE.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("entries", "allocations", "postings")


def _append_only_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("""
            CREATE OR REPLACE FUNCTION prepaid_sync_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP;
            END $$ LANGUAGE plpgsql""")
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION prepaid_sync_append_only()")
    else:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only: {action} refused'); END"
                )


def _drop_append_only_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS prepaid_sync_append_only()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade() -> None:

    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_key', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('debt', sa.BigInteger(), nullable=False),
    sa.Column('credit_limit', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('credit_limit >= 0', name='ck_accounts_credit_limit_nonneg'),
    sa.CheckConstraint('debt >= 0', name='ck_accounts_debt_nonneg'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_key', 'currency', name='uq_accounts_customer_currency')
    )
    op.create_table('postings',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('op', sa.String(length=16), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.Column('customer_key', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('terms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_key', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('contract_ref', sa.String(length=255), nullable=False),
    sa.Column('agreed_amount', sa.BigInteger(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('refund_policy', sa.String(length=16), nullable=False),
    sa.Column('refund_fee_pct', sa.String(length=16), nullable=False),
    sa.Column('credit_limit', sa.BigInteger(), nullable=False),
    sa.Column('low_balance_threshold', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("refund_policy IN ('full','pro_rata','none','fee')", name='ck_terms_refund_policy'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_key', 'currency', 'contract_ref', name='uq_terms_scope')
    )
    op.create_table(
        'entries', sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('balance_after', sa.BigInteger(), nullable=False),
        sa.Column('effective_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('posting_key', sa.String(length=255), nullable=False),
        sa.Column('source_system', sa.String(length=64), nullable=True),
        sa.Column('source_id', sa.String(length=255), nullable=True),
        sa.Column('memo', sa.Text(), nullable=False), sa.Column('reverses_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('deposit','consume','refund','refund_fee','expire','adjust','reverse')",
                           name='ck_entries_kind'),
        sa.CheckConstraint('amount <> 0', name='ck_entries_amount_nonzero'),
        sa.ForeignKeyConstraint(
            ['account_id'],
            ['accounts.id'],
        ), sa.ForeignKeyConstraint(
            ['posting_key'],
            ['postings.key'],
        ), sa.ForeignKeyConstraint(
            ['reverses_id'],
            ['entries.id'],
        ), sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('reverses_id'))
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.create_index('ix_entries_account_effective', ['account_id', 'effective_at'], unique=False)
        batch_op.create_index('ix_entries_posting', ['posting_key'], unique=False)

    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('effective_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refundable', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('source_system', sa.String(length=64), nullable=True),
    sa.Column('source_id', sa.String(length=255), nullable=True),
    sa.CheckConstraint('amount > 0', name='ck_lots_amount_pos'),
    sa.CheckConstraint('remaining >= 0 AND remaining <= amount', name='ck_lots_remaining_range'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_id')
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_expiry', ['expires_at'], unique=False)
        batch_op.create_index('ix_lots_open', ['account_id', 'remaining'], unique=False)

    op.create_table('allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.create_index('ix_allocations_entry', ['entry_id'], unique=False)
        batch_op.create_index('ix_allocations_lot', ['lot_id'], unique=False)
    _append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()

    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.drop_index('ix_allocations_lot')
        batch_op.drop_index('ix_allocations_entry')

    op.drop_table('allocations')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_open')
        batch_op.drop_index('ix_lots_expiry')

    op.drop_table('lots')
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_index('ix_entries_posting')
        batch_op.drop_index('ix_entries_account_effective')

    op.drop_table('entries')
    op.drop_table('terms')
    op.drop_table('postings')
    op.drop_table('accounts')
