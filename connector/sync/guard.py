"""The mass-change guard: a run whose plan would change too much at once is held before any CRM write.

Reconcile counts what its plan would do (`Tally`): customers whose connector-owned fields it writes, open
flags it clears, open CRM tasks it closes. Before it persists anything, `enforce` compares each share with
the connection's limits (`config.MassChangeGuard`); over a limit, the run stops as `held` with the counts,
the limits and a few examples, and nothing of the plan is kept (flags stay open, nothing is queued for the
CRM). `sync run --allow-mass-change` or the connection's settings let it through. A first sync (nothing
ever written for the connection) is never held. After a held run the scheduler starts none until a person
runs the connection (`sync run`, with or without `--allow-mass-change`) or changes its guard settings or
mapping (`held_run` and `guard_key` tell).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from connector.config import MassChangeGuard
from connector.mapping.models import Mapping
from connector.db.rows import loads
from connector.sync import tables as t
from connector.sync.context import Ctx

EXAMPLES = 3


class MassChangeHeld(Exception):
    """The plan is over a limit of the guard; the run ends `held`, before any CRM write."""

    def __init__(self, reason: str, details: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


@dataclass
class Tally:
    """What one run's plan would change, against what there is."""

    first_sync: bool = False
    customers: int = 0
    changed: int = 0
    open_flags: int = 0
    cleared: int = 0
    open_tasks: int = 0
    closing: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # "Name (key)" -> what would happen
    affected: int = 0  # customers with anything counted above
    _seen: set[str] = field(default_factory=set)

    def example(self, who: str, what: str) -> None:
        """Note what the plan does to a customer (what is done to the first few is kept as examples)."""
        if who not in self._seen:
            self._seen.add(who)
            self.affected += 1
        if who in self.examples or len(self.examples) < EXAMPLES:
            self.examples.setdefault(who, []).append(what)


def guard_key(settings: MassChangeGuard, mapping: Mapping) -> str:
    """What a held run was judged under: a later scheduled run is retried only when it differs."""
    text = settings.model_dump_json() + mapping.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _pct(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.0f}%" if whole else "-"


def over(tally: Tally, settings: MassChangeGuard) -> list[tuple[str, int, int, int]]:
    """The measures over their limit: (what, count, of how many, limit %)."""
    measures = [
        ("write the connector-owned fields of {n} of {of} customers", tally.changed, tally.customers,
         settings.max_customers_changed_pct),
        ("clear {n} of {of} open flags", tally.cleared, tally.open_flags, settings.max_flags_cleared_pct),
        ("close {n} of {of} open CRM tasks", tally.closing, tally.open_tasks, settings.max_tasks_closed_pct)
    ]
    return [(what, n, of, limit) for what, n, of, limit in measures
            if of and n >= settings.min_count and n * 100 > limit * of]


def enforce(ctx: Ctx, tally: Tally) -> None:
    """Hold the run (MassChangeHeld) when its plan is over a limit and nothing lets it through. When it is let
    through (`--allow-mass-change`, or a dry run, which writes nothing), what the guard saw goes into the run
    report instead, so the operator sees what a real run would have been held for."""
    settings = ctx.guard
    if settings is None or not settings.enabled or tally.first_sync:
        return
    tripped = over(tally, settings)
    if not tripped:
        return
    parts = [what.format(n=n, of=of) + f" ({_pct(n, of)}; limit {limit}%)" for what, n, of, limit in tripped]
    examples = "; ".join(f"{who}: {', '.join(whats)}" for who, whats in tally.examples.items())
    more = tally.affected - len(tally.examples)
    reason = (
        f"held by the mass-change guard before any CRM write: this run would {' and '.join(parts)}. "
        "Nothing was written to the CRM and no flag was cleared. If that is right, run `prepaid-sync sync "
        f"run --connection {ctx.connection} --allow-mass-change`; if not, correct the mapping or the CRM "
        f"data first. For example: {examples}" + (f" (and {more} more customers)" if more > 0 else ""))
    details = {
        "held": not ctx.allow_mass_change, "reason": reason, "key": guard_key(settings, ctx.mapping),
        "over": [{"what": what.format(n=n, of=of), "count": n, "of": of, "limit_pct": limit}
                 for what, n, of, limit in tripped], "customers": tally.customers,
        "customers_changed": tally.changed, "open_flags": tally.open_flags, "flags_cleared": tally.cleared,
        "open_tasks": tally.open_tasks, "tasks_closed": tally.closing, "limits": settings.model_dump(),
        "examples": tally.examples
    }
    ctx.report.guard = details
    if not ctx.allow_mass_change:
        raise MassChangeHeld(reason, details)


def held_run(conn: Connection, connection: str) -> tuple[int, str] | None:
    """(run id, guard key) of the connection's newest finished real run, when the guard held it."""
    r = t.runs.c
    row = conn.execute(
        select(r.id, r.status, r.stats).where(r.connection == connection, r.dry_run.is_(False), r.status
                                              != "running").order_by(r.id.desc()).limit(1)).first()
    if row is None or row.status != "held":
        return None
    try:
        stats = loads(row.stats) or {}
    except ValueError:
        stats = {}
    guard = stats.get("guard") if isinstance(stats, dict) else None
    return int(row.id), str(guard.get("key") if isinstance(guard, dict) else "")
