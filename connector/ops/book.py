"""The durable schedule (`sync_schedule`): when each connection is next due, and who has claimed that run.

Every worker computes fire times with the same APScheduler trigger, but the row decides who runs:
a claim is a compare-and-set UPDATE, so of several workers that see a run due, exactly one gets it.
A claim carries a lease that the claiming worker keeps extending; when a worker dies, its lease
runs out and the next worker to look resumes the run. Because the next due time is stored, a
restarted worker neither loses a run that fell due while it was down (within the misfire grace)
nor repeats one that already happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, select
from sqlalchemy.exc import IntegrityError

from connector.config import Connection, LoadedSettings
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.schedule_spec import trigger
from connector.ops import tables as ot
from connector.sync import tables as t
from connector.sync.guard import guard_key, held_run

log = logging.getLogger(__name__)
S = ot.schedule.c


@dataclass(frozen=True)
class Claim:
    """A run this worker has claimed: which connection, the due time it covers, and why it runs."""

    connection: str
    slot_at: datetime
    trigger: str  # "schedule" (due) or "recovery" (a dead worker's run, resumed)


def spec_key(loaded: LoadedSettings, conn: Connection) -> str:
    """What the row remembers of the schedule, to notice when an admin changes it."""
    return f"{conn.schedule} @ {loaded.settings.zone(conn) or 'local'}"


def next_fire(loaded: LoadedSettings, conn: Connection, after: datetime) -> datetime:
    """The first fire time strictly after `after` (UTC)."""
    assert conn.schedule is not None
    trig = trigger(conn.schedule, loaded.settings.zone(conn))
    when: datetime | None = trig.get_next_fire_time(None, after + timedelta(microseconds=1))
    assert when is not None
    return when.astimezone(after.tzinfo)


class Book:
    """Reads and claims rows of `sync_schedule` for the connections of one config."""

    def __init__(self, engine: Engine, loaded: LoadedSettings) -> None:
        self.engine = engine
        self.loaded = loaded

    def scheduled(self) -> dict[str, Connection]:
        """Connections that have a schedule."""
        return {n: c for n, c in self.loaded.settings.connections.items() if c.schedule}

    def prepare(self, now: datetime) -> None:
        """Make sure every scheduled connection has a row; a changed schedule re-times it from now.

        A connection that has never run is due at once; one that has run before is due at its next
        fire time."""
        # Reads first, then single-statement writes guarded by what was read (this runs on every poll of
        # every worker: no transaction here reads and then writes, so none waits to upgrade a lock).
        with self.engine.connect() as db:
            rows = db.execute(select(S.connection, S.spec))
            specs: dict[str, str] = {row.connection: row.spec for row in rows}
        for name, conn in self.scheduled().items():
            key = spec_key(self.loaded, conn)
            if specs.get(name) == key:
                continue
            if name in specs:
                nxt = next_fire(self.loaded, conn, now)
                with self.engine.begin() as db:
                    db.execute(ot.schedule.update().where(S.connection == name, S.spec == specs[name]).values(
                        spec=key, next_run_at=nxt, updated_at=now))
                log.info("schedule of %s changed to %s; next run %s", name, key, nxt)
                continue
            with self.engine.connect() as db:
                ran = db.execute(select(exists().where(t.runs.c.connection == name,
                                                       t.runs.c.dry_run.is_(False)))).scalar()
            nxt = next_fire(self.loaded, conn, now) if ran else now
            try:
                with self.engine.begin() as db:
                    db.execute(ot.schedule.insert().values(connection=name, spec=key, next_run_at=nxt,
                                                           missed=0, updated_at=now))
            except IntegrityError:  # another worker inserted it first: theirs is as good
                pass

    def claim(self, name: str, worker: str, now: datetime) -> Claim | None:
        """Claim the connection's run if it is due (or orphaned by a dead worker) and nobody holds it."""
        conn = self.scheduled().get(name)
        if conn is None:
            return None
        sched = self.loaded.settings.scheduler
        with self.engine.connect() as db:
            row = db.execute(select(ot.schedule).where(S.connection == name)).first()
        if row is None:
            return None
        if row.claimed_by is not None and row.lease_until is not None and row.lease_until > now:
            return None  # being run (here or elsewhere)
        orphan = row.claimed_by is not None
        if not orphan and row.next_run_at > now:
            return None
        same = and_(S.connection == name, S.next_run_at == row.next_run_at)
        if orphan:
            same = and_(same, S.claimed_by == row.claimed_by, S.lease_until == row.lease_until)
        else:
            same = and_(same, S.claimed_by.is_(None))
        late = now - row.next_run_at
        if not orphan and self._waits_for_person(name, conn):
            nxt = next_fire(self.loaded, conn, now)
            with self.engine.begin() as db:
                db.execute(ot.schedule.update().where(same).values(next_run_at=nxt, updated_at=now))
            return None
        if not orphan and late > timedelta(seconds=conn.misfire_grace_seconds):
            nxt = next_fire(self.loaded, conn, now)
            with self.engine.begin() as db:
                if db.execute(ot.schedule.update().where(same).values(
                        next_run_at=nxt, missed=S.missed + 1, updated_at=now)).rowcount:
                    log.warning("run of %s due at %s missed by %s (grace %ss); next run %s", name,
                                row.next_run_at, late, conn.misfire_grace_seconds, nxt)
            return None
        with self.engine.begin() as db:
            won = db.execute(ot.schedule.update().where(same).values(
                claimed_by=worker, lease_until=now + timedelta(seconds=sched.lease_seconds),
                slot_at=row.next_run_at, updated_at=now)).rowcount == 1
        if not won:
            return None
        if orphan:
            log.warning("resuming the run of %s claimed by %s, whose lease ran out at %s", name,
                        row.claimed_by, row.lease_until)
        return Claim(name, row.next_run_at, "recovery" if orphan else "schedule")

    def _waits_for_person(self, name: str, conn: Connection) -> bool:
        """The connection's last run was held by the mass-change guard, under the guard settings and mapping
        it has now: running it again would only be held again (and alert again), so it waits for a person."""
        with self.engine.connect() as db:
            held = held_run(db, name)
        if held is None:
            return False
        try:
            now_key = guard_key(conn.mass_change_guard, load_mapping(self.loaded.mapping_path(conn)))
        except ConfigError:
            return False  # a broken mapping: let the run fail and say so
        if held[1] != now_key:
            return False
        log.warning(
            "%s waits for a person: run %s was held by the mass-change guard; run `prepaid-sync sync run "
            "--connection %s --allow-mass-change` if its changes are right, or correct the mapping or the "
            "CRM data and run it without", name, held[0], name)
        return True

    def extend(self, names: list[str], worker: str, now: datetime) -> None:
        """Push the leases of this worker's claims forward."""
        if not names:
            return
        lease = timedelta(seconds=self.loaded.settings.scheduler.lease_seconds)
        with self.engine.begin() as db:
            db.execute(ot.schedule.update().where(S.connection.in_(names), S.claimed_by == worker).values(
                lease_until=now + lease, updated_at=now))

    def finish(self, claim: Claim, worker: str, now: datetime, *, status: str, run_id: int | None,
               not_before: datetime | None = None, again_now: bool = False) -> datetime:
        """Give the claim back and set the next due time: the first fire time after now (missed fire
        times while the run went on are coalesced into that one), at once when `again_now` (an
        interrupted run resumes), never before `not_before` (the API budget's next window)."""
        conn = self.scheduled()[claim.connection]
        nxt = now if again_now else next_fire(self.loaded, conn, now)
        if not_before is not None and nxt < not_before:
            nxt = not_before
        values: dict[str, object] = {
            "claimed_by": None, "lease_until": None, "next_run_at": nxt, "updated_at": now
        }
        if run_id is not None:
            values.update(last_run_at=now, last_status=status, run_id=run_id)
        with self.engine.begin() as db:
            db.execute(ot.schedule.update().where(S.connection == claim.connection, S.claimed_by == worker)
                       .values(**values))
        return nxt
