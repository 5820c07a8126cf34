"""Push: send the persisted outbox (field writes in the CRM's batch size, then tasks) and mark each answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select

from connector.adapters.base import FieldUpdate, TaskRequest
from connector.adapters.errors import CrmError
from connector.errors import ConnectorError, ResumeLater
from connector.db.engine import write_transaction
from connector.mapping.models import Mapping
from connector.db.rows import dumps, loads, upsert_many
from connector.sync.record_errors import resolve_errors
from connector.sync import tables as t
from connector.sync.context import Ctx
from connector.sync.reconcile import norm

PENDING = ("planned", "failed")
MAX_ATTEMPTS = 8
PAGE = 1000  # outbox rows read at a time while the queue is built


def decode_values(ctx: Ctx, payload: str) -> dict[str, Any]:
    """Outbox payload (JSON) -> typed values by the write-back field types (Decimal, int, datetime)."""
    types = {fm.crm: fm.type for fm in ctx.mapping.write_back.values()}
    out: dict[str, Any] = {}
    for k, v in json.loads(payload).items():
        kind = types.get(k)
        if v is None:
            out[k] = None
        elif kind in ("money", "decimal"):
            out[k] = Decimal(str(v))
        elif kind == "integer":
            out[k] = int(Decimal(str(v)))
        elif kind == "datetime":
            out[k] = datetime.fromisoformat(str(v))
        elif kind == "date":
            out[k] = date.fromisoformat(str(v))
        else:
            out[k] = v
    return out


@dataclass
class Queue:
    """The ids of the outbox rows to send, in sending order (only ids are held; rows are read per batch)."""

    writes: dict[str, list[int]] = field(default_factory=dict)  # module -> ids, money first
    opens: list[int] = field(default_factory=list)  # tasks of money flags first
    closes: list[int] = field(default_factory=list)


def pending(ctx: Ctx) -> Queue:
    """Outbox rows still to send (planned now, or left by a crashed or failed run), but not a held
    customer's (`holds`), read a page at a time."""
    rank = write_rank(ctx.mapping)
    o = t.outbox.c
    writes: dict[str, list[list[int]]] = {}  # module -> ids by rank, each in id order
    opens: list[list[int]] = [[], []]
    closes: list[int] = []
    with ctx.engine.connect() as conn:
        rows = conn.execution_options(yield_per=PAGE).execute(
            select(o.id, o.kind, o.module, o.crm_id, o.marker, o.payload).where(
                o.connection == ctx.connection, o.status.in_(PENDING + ("sending",))).order_by(o.id))
        for r in rows:
            if r.crm_id in ctx.held:  # a held customer's writes wait
                continue
            if r.kind == "write":
                writes.setdefault(r.module, [[], [], []])[rank(r)].append(r.id)
            elif r.kind == "task_open":
                opens[task_rank(r)].append(r.id)
            elif r.kind == "task_close":
                closes.append(r.id)
    # modules in the order of their first row by (rank, id), as one sort of all writes would give
    first = {m: min((n, ids[0]) for n, ids in enumerate(by_rank) if ids) for m, by_rank in writes.items()}
    return Queue({m: [i for ids in writes[m] for i in ids] for m in sorted(writes, key=first.__getitem__)},
                 opens[0] + opens[1], closes)


def _rows(ctx: Ctx, ids: list[int]) -> list[Any]:
    """The outbox rows of `ids`, in that order."""
    with ctx.engine.connect() as conn:
        found = {r.id: r for r in conn.execute(select(t.outbox).where(t.outbox.c.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


MONEY_FIELDS = ("balance", "available")  # write-back names whose values are money
MONEY_FLAGS = ("negative", "overdue", "amount_mismatch")


def write_rank(mapping: Mapping) -> Callable[[Any], int]:
    """Rank of an outbox write: 0 the record's money changed; 1 its flags; 2 only cosmetic fields."""
    crm = {name: fm.crm for name, fm in mapping.write_back.items()}
    money = {crm[name] for name in MONEY_FIELDS if name in crm}
    flags = crm.get("flags")

    def rank(row: Any) -> int:
        keys = json.loads(row.payload).keys()
        return 0 if money & keys else 1 if flags in keys else 2

    return rank


def task_rank(row: Any) -> int:
    """Tasks for money flags (negative balance, overdue prepayment, amount mismatch) go first."""
    code = (row.marker or "").split(":")[1:2]
    return 0 if code and code[0] in MONEY_FLAGS else 1


def push(ctx: Ctx) -> None:
    """Send every pending outbox row, money first (so a run stopped by the API budget stops on cosmetic
    fields, not balances); a failure marks the row and the run goes on. Ordering never adds a call:
    rows are only sorted before they are cut into batches."""
    queue = pending(ctx)
    total = sum(len(ids) for ids in queue.writes.values())
    size = ctx.mapping.write_batch_size
    sent = 0
    for module, ids in queue.writes.items():
        for start in range(0, len(ids), size):
            ctx.tick("write", sent, total)
            _send_writes(ctx, module, _rows(ctx, ids[start:start + size]))
            sent += len(ids[start:start + size])
    ctx.tick("write", sent, total)
    done, total = 0, len(queue.opens) + len(queue.closes)
    for send, group in ((_send_opens, queue.opens), (_send_closes, queue.closes)):
        for start in range(0, len(group), 50):
            ctx.tick("tasks", done, total)
            send(ctx, _rows(ctx, group[start:start + 50]))
            done += len(group[start:start + 50])
    ctx.tick("tasks", done, total)


def _mark(ctx: Ctx, ids: list[int], status: str, answer: Any = None) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(t.outbox.update().where(t.outbox.c.id.in_(ids)).values(
            status=status, answer=dumps(answer) if answer is not None else None,
            attempts=t.outbox.c.attempts + 1, updated_at=ctx.clock()))


def _send_writes(ctx: Ctx, module: str, rows: list[Any]) -> None:
    updates = [FieldUpdate(crm_id=r.crm_id, values=decode_values(ctx, r.payload)) for r in rows]
    _mark_sending(ctx, [r.id for r in rows])
    try:
        results = ctx.adapter.write_fields(module, updates)
    except ResumeLater:
        # no later call can succeed (allowance, token limit, credentials): the run stops; rows stay queued
        raise
    except (CrmError, ConnectorError) as exc:
        for r in rows:
            ctx.error(f"{ctx.mapping.crm}:{module}:{r.crm_id}", "", "write", str(exc))
        _mark(ctx, [r.id for r in rows], "failed", {"error": str(exc)})
        return
    ctx.report.write_calls += 1
    now = ctx.clock()
    write_back = {fm.crm: fm for fm in ctx.mapping.write_back.values()}
    c = t.customers.c
    # The outbox rows' answers and the values sent commit together, each kind in one set-based statement.
    # The transaction reads before it writes, so it takes SQLite's write lock up front (no failed upgrade
    # when the run's heartbeat has written meanwhile).
    with write_transaction(ctx.engine) as conn:
        read: dict[str, str | None] = {crm_id: fields for crm_id, fields in conn.execute(
            select(c.crm_id, c.fields).where(c.connection == ctx.connection,
                                             c.crm_id.in_([r.crm_id for r in rows if r.crm_id])))}
        answers: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []
        ok_records: list[str] = []
        for r, res in zip(rows, results):
            answer = {"ok": res.ok, "code": res.code, "message": res.message, "field": res.field}
            record = f"{ctx.mapping.crm}:{module}:{r.crm_id}"
            if res.ok:
                answers.append({"b_id": r.id, "b_status": "ok", "b_answer": dumps(answer),
                                "b_attempts": r.attempts + 1})
                values = json.loads(r.payload)
                fields = loads(read.get(r.crm_id)) or {}
                for k, v in values.items():
                    fm = write_back.get(k)
                    sent.append({"connection": ctx.connection, "crm_id": r.crm_id, "field": k,
                                 "value": norm(fm, v) if fm is not None else None if v is None else str(v),
                                 "run_id": ctx.run_id, "sent_at": now})
                    fields[k] = v
                read[r.crm_id] = dumps(fields)
                ok_records.append(record)
                ctx.report.records_written += 1
            else:
                status = "failed" if r.attempts + 1 < MAX_ATTEMPTS else "dead"
                answers.append({"b_id": r.id, "b_status": status, "b_answer": dumps(answer),
                                "b_attempts": r.attempts + 1})
                ctx.error_in(conn, record, res.field or "", "write", f"{res.code}: {res.message}", now)
        if answers:
            conn.execute(t.outbox.update().where(t.outbox.c.id == bindparam("b_id")).values(
                status=bindparam("b_status"), answer=bindparam("b_answer"), attempts=bindparam("b_attempts"),
                updated_at=now), answers)
        upsert_many(conn, t.sent, sent)
        written = [{"b_id": crm_id, "b_fields": read[crm_id]} for crm_id in
                   dict.fromkeys(r.crm_id for r, res in zip(rows, results) if res.ok)]
        if written:
            conn.execute(
                t.customers.update().where(
                    c.connection == ctx.connection,
                    c.crm_id == bindparam("b_id")).values(fields=bindparam("b_fields")), written)
        resolve_errors(conn, ctx.connection, ok_records, "write", now)


def _mark_sending(ctx: Ctx, ids: list[int]) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(t.outbox.update().where(t.outbox.c.id.in_(ids)).values(status="sending",
                                                                            updated_at=ctx.clock()))


def _send_opens(ctx: Ctx, rows: list[Any]) -> None:
    tasks = [TaskRequest.model_validate_json(r.payload) for r in rows]
    _mark_sending(ctx, [r.id for r in rows])
    try:
        refs = ctx.adapter.create_tasks(tasks)
    except ResumeLater:
        # no later call can succeed (allowance, token limit, credentials): the run stops; rows stay queued
        raise
    except (CrmError, ConnectorError) as exc:
        for r in rows:
            ctx.error(r.marker or "", "", "task", str(exc))
        _mark(ctx, [r.id for r in rows], "failed", {"error": str(exc)})
        return
    by_marker = {ref.marker: ref for ref in refs}
    now = ctx.clock()
    answers: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    for r in rows:
        ref = by_marker.get(r.marker)
        if ref is None:
            answers.append({"b_id": r.id, "b_status": "failed", "b_attempts": r.attempts + 1,
                            "b_answer": dumps({"ok": False})})
            continue
        answers.append({"b_id": r.id, "b_status": "ok", "b_attempts": r.attempts + 1,
                        "b_answer": dumps({"ok": True, "task_id": ref.task_id})})
        made.append({"b_marker": r.marker, "b_task": ref.task_id})
    with ctx.engine.begin() as conn:  # the answers and the flags' task ids, one statement each
        if answers:
            conn.execute(t.outbox.update().where(t.outbox.c.id == bindparam("b_id")).values(
                status=bindparam("b_status"), attempts=bindparam("b_attempts"), updated_at=now,
                answer=bindparam("b_answer")), answers)
        if made:
            conn.execute(t.flags.update().where(t.flags.c.connection == ctx.connection,
                                                t.flags.c.marker == bindparam("b_marker"))
                         .values(task_id=bindparam("b_task")), made)
    ctx.report.tasks_created += len(made)


def _send_closes(ctx: Ctx, rows: list[Any]) -> None:
    _mark_sending(ctx, [r.id for r in rows])
    try:
        found = ctx.adapter.find_tasks([r.marker for r in rows])
        closed: set[str] = set()
        for ref in found:
            if ref.open:
                ctx.adapter.close_task(ref.task_id)
                closed.add(ref.marker)
    except ResumeLater:
        # no later call can succeed (allowance, token limit, credentials): the run stops; rows stay queued
        raise
    except (CrmError, ConnectorError) as exc:
        _mark(ctx, [r.id for r in rows], "failed", {"error": str(exc)})
        for r in rows:
            ctx.error(r.marker or "", "", "task", str(exc))
        return
    _mark(ctx, [r.id for r in rows], "ok", {"ok": True})
    ctx.report.tasks_closed += len(closed)
