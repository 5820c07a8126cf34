"""Pull: read each stream page by page from its cursor, hand every record to its stream's handler, and save
the cursor with the last page.

What happens to a record is elsewhere: `handlers` (per stream), `terms` (contracts), `posting` (the posting
policy for payments and consumption), `messages` (the texts recorded for a person).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connector.adapters.base import EntitySpec
from connector.domain import Deletion, Entity
from connector.mapping.models import EntityMap, Mapping
from connector.sync import cursors
from connector.sync.context import Ctx
from connector.sync.handlers import StreamHandler, handler_for
from connector.sync.holds import open_incomplete, release

PROGRESS_EVERY = 100  # records between progress ticks while a stream is read


def specs(m: Mapping) -> dict[str, EntitySpec]:
    """Adapter EntitySpecs from the mapping; customers also read back the connector-owned fields."""
    out: dict[str, EntitySpec] = {}
    sections: list[tuple[str, Entity, EntityMap | None]] = [
        (stream.name, stream.entity, emap) for stream, emap in m.sections()]
    for name, entity, emap in sections:
        if emap is None:
            continue
        extra = [f.crm for f in emap.extra.values()]
        if name == "customers":
            extra += [f.crm for f in m.write_back.values()]
        out[name] = EntitySpec(entity=entity, module=emap.module,
                               fields={a: f.crm for a, f in emap.fields.items()},
                               extra_fields=tuple(dict.fromkeys(extra)))
    return out


def run_stream(ctx: Ctx, name: str, spec: EntitySpec, since: datetime | None) -> None:
    """Read one stream to its end, then save its cursor, in the CRM's time (`cursors.next_cursor`), with the
    last batch. A stored cursor ahead of the CRM's clock is pulled back first (`cursors.pull_back`); when the
    CRM's time only becomes known with this read's first answer, the check follows the read, and a cursor
    found ahead is read again from where it is pulled back to.

    Where deletions come from a separate read (a CRM's own read of deleted records), it is made only when due
    (`deletion_check`) and its own cursor is saved in the same transaction.
    """
    handler = handler_for(ctx, name)
    due, deletions_due = deletion_check(ctx, name, since)
    known = cursors.crm_now(ctx) is not None
    incomplete = open_incomplete(ctx, spec.module)
    complete: list[str] = []

    def plan() -> tuple[bool, datetime | None, datetime | None]:
        checked, deletions_since = due, deletions_due
        if not checked and (ahead := cursors.deletion_cursor_ahead(ctx, name)) is not None:
            # saved ahead of the CRM: check now, from where it comes back to
            checked, deletions_since = True, ahead
        return checked, *cursors.pull_back(ctx, name, since, deletions_since)

    checked, read_since, deletions_since = plan()
    count, newest = _read(ctx, name, spec, handler, read_since, deletions_since, incomplete, complete)
    if not known:  # the CRM's time is known since this read's first answer: were the cursors ahead of it?
        again = plan()
        if again[1:] != (read_since, deletions_since):
            checked, read_since, deletions_since = again
            more, newer = _read(ctx, name, spec, handler, read_since, deletions_since, incomplete, complete,
                                count)
            count, newest = count + more, max((at for at in (newest, newer) if at is not None), default=None)
    handler.finish()  # post what is still pending before the cursor may pass it
    cursor = cursors.next_cursor(ctx, newest)
    with ctx.engine.begin() as conn:
        handler.flush(conn)
        release(conn, ctx, complete)
        if cursor is not None:
            cursors.set_cursor(conn, ctx.connection, name, cursor, ctx.run_id)
            if checked:
                cursors.set_cursor(conn, ctx.connection, cursors.deletion_stream(name), cursor, ctx.run_id)
    ctx.report.pulled[name] = count
    ctx.tick(f"pull {name}", count, count)


def _read(ctx: Ctx, name: str, spec: EntitySpec, handler: StreamHandler, since: datetime | None,
          deletions_since: datetime | None, incomplete: set[str], complete: list[str],
          done: int = 0) -> tuple[int, datetime | None]:
    """Hand every changed record (and deletion) to `handler`; how many, and the newest time the CRM gave them.

    Records in `incomplete` (held for a missing field) that come again are listed in `complete`."""
    overlap = ctx.overlap if since is not None or deletions_since is not None else timedelta(0)
    count, newest = 0, None
    for item in ctx.adapter.stream(spec, since=since, overlap=overlap, deletions_since=deletions_since):
        count += 1
        at = item.deleted_at if isinstance(item, Deletion) else item.modified_at
        if at is not None and (newest is None or at > newest):
            newest = at
        if item.key in incomplete:
            complete.append(item.key)
        handler.take(item)
        if (done + count) % PROGRESS_EVERY == 0:
            ctx.tick(f"pull {name}", done + count)
    return count, newest


def deletion_check(ctx: Ctx, name: str, since: datetime | None) -> tuple[bool, datetime | None]:
    """Whether this run checks the stream's deletions (and saves its deletion cursor), and from when.

    Only adapters with a separate deletion read (`deletion_check_interval`) have a deletion cursor.
    It is due when the last check is at least the interval old (0: every run), on a full run, or when
    there is none yet; the read starts at the last check (the adapter subtracts the overlap), or at
    the stream's cursor when no check was recorded. A first pull of a stream has nothing to delete:
    it only starts the deletion cursor.
    """
    interval = ctx.adapter.deletion_check_interval
    if interval is None:
        return False, None
    last = cursors.get_cursor(ctx.engine, ctx.connection, cursors.deletion_stream(name))
    if last is None:
        last = since if since is not None else cursors.get_cursor(ctx.engine, ctx.connection, name)
        return True, last
    if since is None or (cursors.crm_now(ctx) or ctx.started_at) - last >= interval:  # both in the CRM's time
        return True, last
    return False, None
