"""Fewer random index pages per posting: entry ranges on postings, lots found by account only.

A durable posting on a large ledger costs the pages its commit dirties, and half of those were
random pages of indexes. This revision replaces three of them with ways to answer the same questions
that a posting does not have to write:

- `ix_entries_posting` (entries by posting key, for replays and `verify`) goes; a posting now keeps
  the id range of its entries (`postings.first_entry_id`, `postings.last_entry_id`), so a replay
  reads its entries by primary key. Existing postings get their range from their entries here.
- `ix_allocations_lot` (allocations by lot) goes; allocations of a lot are found through the entries
  of the lot's account (`ix_entries_account_effective`, then `ix_allocations_entry`), since an
  allocation only ever moves a lot of its own entry's account (`verify` checks it).
- `ix_lots_open` (account, remaining) becomes `ix_lots_account` (account): drawing a lot down no
  longer moves an index entry (and on PostgreSQL the update can stay on the row's page, a HOT update;
  `accounts` and `lots` get fillfactor 80 there to leave that room).

On SQLite `postings` becomes a WITHOUT ROWID table: the row lives in the key's B-tree, one page per
posting instead of a table page plus a key-index page. The append-only triggers stay on every table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_POSTING_COLUMNS = "key, op, payload_hash, customer_key, currency, result, recorded_at"
_RANGES = "SELECT posting_key, MIN(id) AS lo, MAX(id) AS hi FROM entries GROUP BY posting_key"


def _sqlite_postings(*, without_rowid: bool) -> None:
    """Rebuild `postings` on SQLite (WITHOUT ROWID with entry ranges, or back to the rowid table).

    Runs with foreign keys off (env.py), as SQLite's own table-rebuild procedure asks; the
    references from `entries` are checked before the transaction commits.
    """
    extra = ", first_entry_id INTEGER, last_entry_id INTEGER" if without_rowid else ""
    kind = " WITHOUT ROWID" if without_rowid else ""
    op.execute(f"""CREATE TABLE postings_new (
        key VARCHAR(255) NOT NULL, op VARCHAR(16) NOT NULL, payload_hash VARCHAR(64) NOT NULL,
        customer_key VARCHAR(255) NOT NULL, currency VARCHAR(3) NOT NULL, result TEXT NOT NULL,
        recorded_at DATETIME NOT NULL{extra}, PRIMARY KEY (key)){kind}""")
    if without_rowid:
        op.execute(f"INSERT INTO postings_new SELECT p.{_POSTING_COLUMNS.replace(', ', ', p.')}, r.lo, r.hi "
                   f"FROM postings p LEFT JOIN ({_RANGES}) r ON r.posting_key = p.key")
    else:
        op.execute(f"INSERT INTO postings_new SELECT {_POSTING_COLUMNS} FROM postings")
    op.execute("DROP TABLE postings")  # its triggers go with it; they are made again below
    op.execute("ALTER TABLE postings_new RENAME TO postings")
    for action in ("UPDATE", "DELETE"):
        refused = f"ledger table postings is append-only: {action} refused"
        op.execute(f"CREATE TRIGGER postings_no_{action.lower()} BEFORE {action} ON postings "
                   f"BEGIN SELECT RAISE(ABORT, '{refused}'); END")
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check(entries)").first()
    if broken is not None:
        raise RuntimeError(f"entries refer to a missing posting after rebuilding postings: {tuple(broken)}")


def upgrade() -> None:
    """Entry ranges on postings; drop the by-posting, by-lot and (account, remaining) indexes."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE postings ADD COLUMN first_entry_id INTEGER, ADD COLUMN last_entry_id INTEGER")
        op.execute("ALTER TABLE postings DISABLE TRIGGER postings_append_only")
        op.execute(f"UPDATE postings p SET first_entry_id = r.lo, last_entry_id = r.hi FROM ({_RANGES}) r "
                   "WHERE r.posting_key = p.key")
        op.execute("ALTER TABLE postings ENABLE TRIGGER postings_append_only")
        op.execute("ALTER TABLE accounts SET (fillfactor = 80)")
        op.execute("ALTER TABLE lots SET (fillfactor = 80)")
    else:
        _sqlite_postings(without_rowid=True)
    op.execute("DROP INDEX ix_entries_posting")
    op.execute("DROP INDEX ix_allocations_lot")
    op.execute("DROP INDEX ix_lots_open")
    op.execute("CREATE INDEX ix_lots_account ON lots (account_id)")


def downgrade() -> None:
    """Back to revision 0004's indexes and rowid `postings` (the entry ranges are dropped)."""
    op.execute("DROP INDEX ix_lots_account")
    op.execute("CREATE INDEX ix_lots_open ON lots (account_id, remaining)")
    op.execute("CREATE INDEX ix_allocations_lot ON allocations (lot_id)")
    op.execute("CREATE INDEX ix_entries_posting ON entries (posting_key)")
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
        op.execute("ALTER TABLE lots RESET (fillfactor)")
        op.execute("ALTER TABLE postings DROP COLUMN first_entry_id, DROP COLUMN last_entry_id")
    else:
        _sqlite_postings(without_rowid=False)
