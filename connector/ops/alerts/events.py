"""Which alerts a finished run raises: a failure, a failure streak, a recovery, new critical flags.

Only real runs count: dry runs never alert and are skipped in the history. Failures, successes and
streaks are read as `connector.ops.history` defines them (the same reading `prepaid-sync status` uses).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, select

from connector.ops.alerts.config import AlertSettings
from connector.ops.history import FAILURES, SUCCESSES, failure_streak, live_run, run_reason
from connector.sync import tables as t

MAX_CUSTOMERS = 10
Severity = Literal["info", "warning", "critical"]


class Alert(BaseModel):
    """One thing worth telling people about; channels render it in their own format."""

    model_config = ConfigDict(frozen=True)

    event: str
    connection: str
    run_id: int | None
    title: str
    text: str
    severity: Severity
    fields: dict[str, Any] = {}


def _customer_names(conn: Any, connection: str, keys: list[str]) -> dict[str, str]:
    # Flag rows carry the ledger key (crm:module:id); the customer table is keyed by the CRM id.
    by_id = {key.rsplit(":", 1)[-1]: key for key in keys}
    rows = conn.execute(select(t.customers.c.crm_id, t.customers.c.name).where(
        t.customers.c.connection == connection, t.customers.c.crm_id.in_(list(by_id))))
    return {by_id[r.crm_id]: r.name for r in rows if r.name}


def _flags_alert(conn: Any, connection: str, run_id: int, codes: list[str]) -> Alert | None:
    rows = conn.execute(select(t.flags.c.customer_id, t.flags.c.code, t.flags.c.detail).where(
        t.flags.c.connection == connection, t.flags.c.run_id == run_id, t.flags.c.code.in_(codes))
        .order_by(t.flags.c.id)).all()
    if not rows:
        return None
    counts = Counter(r.code for r in rows)
    shown = rows[:MAX_CUSTOMERS]
    names = _customer_names(conn, connection, [r.customer_id for r in shown])
    summary = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
    lines = [f"Run {run_id} of {connection} opened {len(rows)} critical flag(s): {summary}."]
    customers = []
    for r in shown:
        name = names.get(r.customer_id)
        who = f"{name} ({r.customer_id})" if name else r.customer_id
        lines.append(f"- {r.code}: {who}: {r.detail}")
        customers.append({"customer_id": r.customer_id, "name": name, "code": r.code, "detail": r.detail})
    if len(rows) > len(shown):
        lines.append(f"... and {len(rows) - len(shown)} more (prepaid-sync flags in the sync_flags table)")
    return Alert(event="critical_flags", connection=connection, run_id=run_id, severity="critical",
                 title=f"prepaid-sync: {len(rows)} new critical flag(s) on {connection}",
                 text="\n".join(lines),
                 fields={"counts": dict(sorted(counts.items())), "customers": customers})


def decide(engine: Engine, connection: str, run_id: int, rules: AlertSettings) -> list[Alert]:
    """The alerts finished run `run_id` of `connection` raises under `rules` (empty for dry or unknown
    runs)."""
    with engine.connect() as conn:
        run = conn.execute(select(t.runs).where(t.runs.c.id == run_id,
                                                t.runs.c.connection == connection)).first()
        if run is None or run.dry_run or run.status == "running":
            return []
        base = {"status": run.status, "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None}
        out: list[Alert] = []
        if run.status in FAILURES:
            reason = run_reason(run)[:500]
            streak = failure_streak(conn, connection, up_to=run_id, live=live_run(conn, connection))
            fields = {**base, "reason": reason, "consecutive_failures": streak}
            text = f"Run {run_id} of {connection} ended {run.status}" + (f": {reason}" if reason else ".")
            out.append(Alert(event="run_failed", connection=connection, run_id=run_id, severity="warning",
                             title=f"prepaid-sync: run {run_id} of {connection} {run.status}", text=text,
                             fields=fields))
            n = rules.consecutive_failures
            if streak >= n and streak % n == 0:
                out.append(
                    Alert(
                        event="consecutive_failures", connection=connection, run_id=run_id,
                        severity="critical", fields=fields,
                        title=f"prepaid-sync: {connection} failed {streak} runs in a row",
                        text=f"The last {streak} runs of {connection} failed; the latest, run {run_id}, "
                        f"ended {run.status}" + (f": {reason}" if reason else ".")))
        elif run.status in SUCCESSES:
            prev = conn.execute(select(t.runs.c.id, t.runs.c.status).where(
                t.runs.c.connection == connection, t.runs.c.dry_run.is_(False), t.runs.c.id < run_id,
                t.runs.c.status.in_(FAILURES + SUCCESSES)).order_by(t.runs.c.id.desc()).limit(1)).first()
            if prev is not None and prev.status in FAILURES:
                streak = failure_streak(conn, connection, up_to=prev.id, live=live_run(conn, connection))
                out.append(
                    Alert(
                        event="recovered", connection=connection, run_id=run_id, severity="info",
                        title=f"prepaid-sync: {connection} recovered",
                        text=f"Run {run_id} of {connection} ended {run.status} after {streak} failed "
                        f"run(s) (last failure: run {prev.id}).",
                        fields={**base, "failed_runs": streak, "last_failed_run": prev.id}))
        if rules.critical_flags:
            flagged = _flags_alert(conn, connection, run_id, rules.critical_flags)
            if flagged is not None:
                out.append(flagged)
    return [a for a in out if a.event in rules.events]
