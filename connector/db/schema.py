"""Every table of the database on one metadata: importing this module registers them all."""

from __future__ import annotations

import connector.api.tables  # noqa: F401  (API keys)
import connector.ledger.tables  # noqa: F401  (the ledger)
import connector.ops.tables  # noqa: F401  (schedule slots, alert outbox)
import connector.push.tables  # noqa: F401  (push channels)
import connector.sync.tables  # noqa: F401  (sync state)
from sqlmodel import SQLModel

metadata = SQLModel.metadata
