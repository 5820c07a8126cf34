"""Incremental cursors in the CRM's time, never this machine's: where they are stored and how they move.

A stream's cursor is where its next read starts (less the overlap). It is saved as the CRM's time when
the run began: the `Date` of the CRM's first answer in the run. A CRM that sends no `Date` gives the
newest modification time the stream returned instead, and a read that returned nothing then leaves the
cursor where it was. Either way the cursor never passes a time the CRM has stated, whatever our clock
says, so a connector whose clock runs ahead of the CRM's no longer skips what the CRM records next.

A stored cursor found ahead of the CRM's clock (saved while this machine's clock ran ahead, before
cursors followed the CRM) is pulled back to the newest modification time stored for the stream (the
CRM's own word for how far the last reads got), or to a full read when nothing is stored; the run
logs it and lists it in its report (`cursors_pulled_back`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, Engine, Table, func, select

from connector.db.rows import upsert
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.domain import STREAMS

log = logging.getLogger(__name__)

# Where the records of each stream are kept, with the item kind for the shared items table.
_STORED: dict[str, tuple[Table, str | None]] = {
    name: (t.table_of(stream), stream.item_kind) for name, stream in STREAMS.items()}


def deletion_stream(name: str) -> str:
    """The cursor name of a stream's separate deletion check (a CRM's own read of deleted records)."""
    return f"{name}:deleted"


def get_cursor(engine: Engine, connection: str, stream: str) -> datetime | None:
    """Where the stream's last completed pull started, or None."""
    with engine.connect() as conn:
        return conn.execute(select(t.cursors.c.cursor_at).where(
            t.cursors.c.connection == connection, t.cursors.c.stream == stream)).scalar()


def set_cursor(conn: Connection, connection: str, stream: str, at: datetime, run_id: int) -> None:
    """Save a stream's cursor (call inside the transaction that stores the data it covers)."""
    upsert(conn, t.cursors, {"connection": connection, "stream": stream}, {"cursor_at": at, "run_id": run_id})


def crm_now(ctx: Ctx) -> datetime | None:
    """The CRM's time as its newest answer in this run stated it, or None before the run's first answer."""
    clock = ctx.crm_clock
    return clock.latest if clock is not None and clock.since_mark is not None else None


def next_cursor(ctx: Ctx, newest: datetime | None) -> datetime | None:
    """Where the stream's cursor goes after a complete read: the CRM's time when the run began, else the
    newest modification time the read returned (None: leave the cursor as it is)."""
    started = ctx.crm_clock.since_mark if ctx.crm_clock is not None else None
    return started if started is not None else newest


def newest_stored(ctx: Ctx, stream: str) -> datetime | None:
    """The newest modification time stored for the stream's records (a time the CRM stated)."""
    table, kind = _STORED[stream]
    query = select(func.max(table.c.modified_at)).where(table.c.connection == ctx.connection)
    if kind is not None:
        query = query.where(table.c.kind == kind)
    with ctx.engine.connect() as conn:
        return conn.execute(query).scalar()


def deletion_cursor_ahead(ctx: Ctx, stream: str) -> datetime | None:
    """The stream's stored deletion cursor when it is ahead of the CRM's clock (its check is then due now)."""
    now = crm_now(ctx)
    if now is None or ctx.adapter.deletion_check_interval is None:
        return None
    last = get_cursor(ctx.engine, ctx.connection, deletion_stream(stream))
    return last if last is not None and last > now else None


def pull_back(ctx: Ctx, stream: str, since: datetime | None, deletions_since: datetime | None
              ) -> tuple[datetime | None, datetime | None]:
    """`since` and `deletions_since`, each pulled back (and reported) when it is ahead of the CRM's clock."""
    now = crm_now(ctx)
    if now is None or not any(at is not None and at > now for at in (since, deletions_since)):
        return since, deletions_since
    newest = newest_stored(ctx, stream)
    target = min(newest, now) if newest is not None else None
    for label, at in ((stream, since), (deletion_stream(stream), deletions_since)):
        if at is not None and at > now:
            log.warning(
                "cursor of %s (%s) is %s ahead of the CRM's clock (%s): it was saved while this machine's "
                "clock ran ahead of the CRM's; reading again from %s", label, at.isoformat(), at - now,
                now.isoformat(),
                target.isoformat() if target else "the beginning")
            ctx.report.cursors_pulled_back.append({"stream": label, "cursor": at, "crm_time": now,
                                                   "pulled_back_to": target})
    return (target if since is not None and since > now else since,
            target if deletions_since is not None and deletions_since > now else deletions_since)
