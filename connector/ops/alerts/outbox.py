"""The alert outbox (`ops_alerts`): one row per alert and channel, delivered with retries and backoff.

A row goes `pending` -> `sending` (claimed by one process) -> `sent`, or back to `pending` with a
later `next_attempt_at` after a failure, or `dead` after `max_attempts`. Claiming is a
compare-and-set UPDATE on (id, status, attempts), so with several workers on one database a row is
sent by exactly one of them; while a row is `sending`, `next_attempt_at` holds the end of the claim,
and a claim older than that (its process died mid-send) is taken over as a new attempt.

Nothing here raises: a broken channel, a missing secret or an unreachable server is recorded on
the row and logged (redacted), never passed on to the sync that asked for the alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import Engine, func, or_, select

from connector import redact
from connector.backoff import backoff as next_wait
from connector.db.engine import write_transaction
from connector.ops.alerts.channels import DeliveryError, send
from connector.ops.alerts.config import AlertSettings
from connector.ops.alerts.events import Alert, decide
from connector.ops import tables as ot

log = logging.getLogger(__name__)
CLAIM_SECONDS = 300  # far above any send's timeout: a live sender always finishes inside its claim
BATCH = 100


@dataclass
class DeliveryStats:
    """What one pass did; `deferred` rows were due but left for a later pass (rate limit, channel down,
    time)."""

    enqueued: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return asdict(self)


def backoff(attempts: int, settings: AlertSettings) -> timedelta:
    """Wait after the `attempts`-th failed try: backoff_seconds doubled each time, capped (no jitter: one
    sender per row, and the claim already keeps workers apart)."""
    return timedelta(seconds=next_wait(attempts, settings.backoff_seconds, settings.max_backoff_seconds))


def enqueue(engine: Engine, alerts: Iterable[Alert], settings: AlertSettings, now: datetime) -> int:
    """Write one pending row per (alert, channel that takes it); returns the rows written.

    Idempotent per run: an alert of the same event and run already queued for a channel is not queued again.
    """
    written = 0
    with write_transaction(engine) as conn:
        for alert in alerts:
            for ch in settings.routes(alert.event, alert.connection):
                if alert.run_id is not None and conn.execute(select(ot.alerts.c.id).where(
                        ot.alerts.c.connection == alert.connection, ot.alerts.c.event == alert.event,
                        ot.alerts.c.channel == ch.name, ot.alerts.c.run_id == alert.run_id).limit(1)).first():
                    continue
                conn.execute(ot.alerts.insert().values(
                    connection=alert.connection, event=alert.event, channel=ch.name, run_id=alert.run_id,
                    payload=alert.model_dump_json(), status="pending", attempts=0, next_attempt_at=now,
                    created_at=now))
                written += 1
    return written


def _claim(engine: Engine, row: Any, now: datetime) -> bool:
    with write_transaction(engine) as conn:
        res = conn.execute(ot.alerts.update().where(
            ot.alerts.c.id == row.id,
            ot.alerts.c.status == row.status,
            ot.alerts.c.attempts == row.attempts,
            ot.alerts.c.next_attempt_at <= now,
        ).values(status="sending", attempts=row.attempts + 1,
                 next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)))
        return res.rowcount == 1


def _finish(engine: Engine, row_id: int, attempts: int, **values: Any) -> None:
    with write_transaction(engine) as conn:
        res = conn.execute(ot.alerts.update().where(ot.alerts.c.id == row_id, ot.alerts.c.status == "sending",
                                                    ot.alerts.c.attempts == attempts).values(**values))
    if res.rowcount != 1:
        log.warning("alert %s: the claim ran out before the send finished; another worker owns the row",
                    row_id)


def _sent_last_minute(engine: Engine, channel: str, now: datetime) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ot.alerts).where(
            ot.alerts.c.channel == channel, ot.alerts.c.status == "sent",
            ot.alerts.c.sent_at > now - timedelta(seconds=60))).scalar() or 0)


def _attempt(engine: Engine, settings: AlertSettings, row: Any, now: datetime, http: requests.Session,
             environ: Mapping[str, str] | None, stats: DeliveryStats) -> DeliveryError | None:
    """Send one claimed row and record the outcome; the error, if any, goes back to the caller."""
    attempts = row.attempts + 1
    error: DeliveryError | None = None
    try:
        alert = Alert.model_validate_json(row.payload)
        channel = settings.channel(row.channel)
        send(channel, alert, now=now, delivery_id=row.id, session=http, environ=environ,
             timeout=settings.timeout_seconds)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # an unknown channel or an unreadable row: record it like a failed send
        error = DeliveryError(redact.text(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"))
    if error is None:
        _finish(engine, row.id, attempts, status="sent", sent_at=now, next_attempt_at=now)
        stats.sent += 1
        log.info("alert %s (%s, run %s) sent to %s", row.id, row.event, row.run_id, row.channel)
        return None
    if attempts >= settings.max_attempts:
        _finish(engine, row.id, attempts, status="dead", last_error=error.message, next_attempt_at=now)
        stats.dead += 1
        log.error("alert %s (%s) to %s is dead after %d attempts: %s", row.id, row.event, row.channel,
                  attempts, error.message)
    else:
        wait = backoff(attempts, settings)
        if error.retry_after:
            wait = max(wait, timedelta(seconds=min(error.retry_after, settings.max_backoff_seconds)))
        _finish(engine, row.id, attempts, status="pending", last_error=error.message,
                next_attempt_at=now + wait)
        stats.retrying += 1
        log.warning("alert %s (%s) to %s failed (attempt %d of %d, next in %ds): %s", row.id, row.event,
                    row.channel, attempts, settings.max_attempts, wait.total_seconds(), error.message)
    stats.errors.append(f"{row.channel}: {error.message}")
    return error


def deliver_due(engine: Engine, settings: AlertSettings, now: datetime, *,
                session: requests.Session | None = None,
                environ: Mapping[str, str] | None = None) -> DeliveryStats:
    """Send the rows due at `now` (oldest first); never raises. `environ` replaces os.environ (tests)."""
    stats = DeliveryStats()
    http = session or requests.Session()
    deadline = time.monotonic() + settings.deliver_budget_seconds
    try:
        with engine.connect() as conn:
            due = conn.execute(
                select(ot.alerts.c.id, ot.alerts.c.channel, ot.alerts.c.event, ot.alerts.c.run_id,
                       ot.alerts.c.status, ot.alerts.c.attempts, ot.alerts.c.payload).where(
                           or_(ot.alerts.c.status == "pending", ot.alerts.c.status == "sending"),
                           ot.alerts.c.next_attempt_at <= now).order_by(ot.alerts.c.id).limit(BATCH)).all()
        held: set[str] = set()  # channels that are down or throttling us: skip their other rows this pass
        sent_now: dict[str, int] = {}
        for row in due:
            if row.channel in held or time.monotonic() > deadline:
                stats.deferred += 1
                continue
            limit = next((ch.per_minute() for ch in settings.channels if ch.name == row.channel), None)
            if limit is not None:
                if row.channel not in sent_now:
                    sent_now[row.channel] = _sent_last_minute(engine, row.channel, now)
                if sent_now[row.channel] >= limit:
                    held.add(row.channel)
                    stats.deferred += 1
                    continue
            try:
                if not _claim(engine, row, now):
                    continue  # another worker has it
                error = _attempt(engine, settings, row, now, http, environ, stats)
            except Exception as exc:  # the database itself failed for this row; the claim expires on its own
                msg = redact.text(f"{type(exc).__name__}: {exc}")
                log.error("alert %s to %s: could not record the delivery: %s", row.id, row.channel, msg)
                stats.errors.append(f"{row.channel}: {msg}")
                continue
            if error is None:
                sent_now[row.channel] = sent_now.get(row.channel, 0) + 1
            elif error.unreachable or error.retry_after:
                held.add(row.channel)
    except Exception as exc:  # never let alerting fail the caller
        msg = redact.text(f"{type(exc).__name__}: {exc}")
        log.error("alert delivery pass failed: %s", msg)
        stats.errors.append(msg)
    finally:
        if session is None:
            http.close()
    return stats


def notify_run(engine: Engine, settings: AlertSettings, connection: str, run_id: int, now: datetime, *,
               session: requests.Session | None = None,
               environ: Mapping[str, str] | None = None) -> DeliveryStats:
    """After a run: decide its alerts, queue them, and deliver everything due; never raises."""
    if not settings.channels:
        return DeliveryStats()
    enqueued = 0
    try:
        enqueued = enqueue(engine, decide(engine, connection, run_id, settings), settings, now)
    except Exception as exc:  # deciding or queueing failed: log it, still flush what is already queued
        log.error("alerts for run %s of %s could not be queued: %s", run_id, connection,
                  redact.text(f"{type(exc).__name__}: {exc}"))
    stats = deliver_due(engine, settings, now, session=session, environ=environ)
    stats.enqueued = enqueued
    return stats


def unsent(engine: Engine, *, limit: int = 200) -> list[dict[str, Any]]:
    """Rows not (yet) delivered, newest first: pending, sending and dead."""
    with engine.connect() as conn:
        rows = conn.execute(select(ot.alerts).where(ot.alerts.c.status != "sent")
                            .order_by(ot.alerts.c.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        title = ""
        try:
            title = Alert.model_validate_json(r.payload).title
        except ValueError:
            pass
        out.append({
            "id": r.id, "connection": r.connection, "event": r.event, "channel": r.channel,
            "run_id": r.run_id, "status": r.status, "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at, "last_error": r.last_error, "created_at": r.created_at,
            "title": title
        })
    return out
