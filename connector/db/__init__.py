"""The one database: engine and transactions (`engine`), shared column types (`types`), row helpers for
any table (`rows`: JSON text columns, fingerprints, upserts), every layer's tables gathered on one metadata
(`schema`), and the alembic migrations (`migrations/`).

Each layer keeps its own tables beside it (`ledger/tables.py`, `sync/tables.py`, `ops/tables.py`);
this package only knows where they are, so nothing below it imports upwards.
"""
