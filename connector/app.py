"""Wiring above the layers: the CRM adapter a connection names, and the SyncEngine that runs it.

The one place that knows which vendor package serves which `crm` setting; the CLI, the scheduler,
the demo and the benchmarks build their engines here, so the sync engine itself knows no vendor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine

from connector.adapters.base import CrmAdapter
from connector.adapters.http import RetryPolicy
from connector.adapters.push import PushSource
from connector.config import Connection, LoadedSettings
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.mapping.models import Mapping
from connector.push.channels import Channels
from connector.push.debounce import LOCKED
from connector.sync.budget import ApiBudget
from connector.sync.lock import RunLocked
from connector.sync.pull import specs
from connector.sync.runner import SyncEngine
from connector.timeutil import zone

log = logging.getLogger(__name__)


def build_adapter(conn: Connection, mapping: Mapping, retry: RetryPolicy | None = None, *,
                  tz: str | None = None) -> CrmAdapter:
    """The adapter of `conn`'s CRM; secrets come from the environment variables it names. `tz` is the
    connection's zone with the `[scheduler]` default filled in (else the connection's own, else the
    machine's)."""
    retry = retry or RetryPolicy(max_attempts=conn.retry_attempts)
    by_entity = {spec.entity: spec for spec in specs(mapping).values()}
    names = conn.env_names()
    if conn.crm == "zoho":
        from connector.adapters.zoho import ZohoAdapter, ZohoAuth, ZohoAuthConfig, ZohoClient

        config = ZohoAuthConfig(data_center=conn.data_center, accounts_url=conn.accounts_url,
                                api_domain=conn.api_domain, client_id_env=names["client_id"],
                                client_secret_env=names["client_secret"],
                                refresh_token_env=names["refresh_token"])
        # Zoho's daily credits start again at the org's midnight: the connection's zone stands for the org's.
        client = ZohoClient(ZohoAuth.from_env(config), retry=retry, org_zone=zone(tz or conn.timezone))
        return ZohoAdapter(client, specs=by_entity, default_currency=mapping.currency,
                           deletion_check_interval=timedelta(minutes=conn.deletion_check_minutes))
    from connector.adapters.fxiaoke import FxiaokeAdapter, FxiaokeTaskTarget

    target = FxiaokeTaskTarget.custom_object(mapping.tasks.target) if mapping.tasks.target else None
    assert conn.base_url is not None
    return FxiaokeAdapter.from_env(conn.base_url, env_names=names, open_user_id=conn.open_user_id,
                                   currency=mapping.currency or "CNY", task_target=target, retry=retry)


def build_sync_engine(loaded: LoadedSettings, name: str | None, db: Engine, *, holder: str | None = None,
                      progress: Callable[[str, int, int | None], None] | None = None) -> SyncEngine:
    """The SyncEngine of a configured connection: its mapping, adapter, lease settings and API budget."""
    conn_name, conn = loaded.settings.connection(name)
    mapping = load_mapping(loaded.mapping_path(conn))
    if mapping.crm != conn.crm:
        raise ConfigError(f"connection {conn_name!r} is {conn.crm} but its mapping is for {mapping.crm}",
                          field="mapping")
    sched = loaded.settings.scheduler
    # Without a daily budget the meter still counts, so `status` shows what each day spent.
    tz = loaded.settings.zone(conn)
    budget = ApiBudget(db, conn_name, limit=conn.daily_api_budget, unit=conn.unit(), tz=zone(tz))
    return SyncEngine(conn_name, db, build_adapter(conn, mapping, tz=tz), mapping,
                      overlap=timedelta(seconds=conn.overlap_seconds), progress=progress, holder=holder,
                      lease=timedelta(seconds=sched.lease_seconds),
                      heartbeat=timedelta(seconds=sched.heartbeat_seconds), budget=budget,
                      lock_wait=timedelta(seconds=sched.lock_wait_seconds), guard=conn.mass_change_guard)


def build_push_source(loaded: LoadedSettings, name: str | None, db: Engine) -> PushSource | None:
    """The connection's change-notification channel at its CRM (None: the CRM has no record-change push).

    Its calls count against the connection's API budget; edits of the fields the connector writes back
    do not notify (the sync's own writes would otherwise call it back)."""
    conn_name, conn = loaded.settings.connection(name)
    mapping = load_mapping(loaded.mapping_path(conn))
    tz = loaded.settings.zone(conn)
    adapter = build_adapter(conn, mapping, tz=tz)
    budget = ApiBudget(db, conn_name, limit=conn.daily_api_budget, unit=conn.unit(), tz=zone(tz))
    adapter.set_gate(budget.charge)
    return adapter.push_source({mapping.customers.module: [f.crm for f in mapping.write_back.values()]})


def push_runner(loaded: LoadedSettings, db: Engine, *, holder: str | None = None) -> Callable[[str], str]:
    """`run(connection)` for the push debouncer: one incremental run with trigger `push` (engines kept between
    runs, so the CRM token is reused); `LOCKED` when another run holds the connection."""
    engines: dict[str, SyncEngine] = {}
    lock = threading.Lock()

    def run(name: str) -> str:
        with lock:
            engine = engines.get(name)
            if engine is None:
                engine = engines[name] = build_sync_engine(loaded, name, db, holder=holder)
        try:
            report = engine.run(trigger="push")
        except RunLocked as exc:
            log.info("push run of %s waits: %s", name, exc)
            return LOCKED
        log.info("push run %s of %s: %s", report.run_id, name, report.status)
        return report.status

    return run


def renew_push_channels(loaded: LoadedSettings, db: Engine, channels: Channels | None = None) -> list[str]:
    """Renew every push channel that is due (the scheduler's poll and `serve` call this); the names renewed.
    A failure is logged and kept in the channel's `last_error`; it is tried again a minute later."""
    channels = channels or Channels(db)
    renewed = []
    for state in channels.all():
        if state.connection not in loaded.settings.connections or not channels.due(state.connection):
            continue
        try:
            source = build_push_source(loaded, state.connection, db)
            if source is not None and channels.renew(state.connection, source) is not None:
                renewed.append(state.connection)
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the others
            log.exception("renewing the push channel of %s failed", state.connection)
    return renewed
