"""Wiring above the layers: the CRM adapter a connection names, and the SyncEngine that runs it.

The one place that knows which vendor package serves which `crm` setting; the CLI, the scheduler,
the demo and the benchmarks build their engines here, so the sync engine itself knows no vendor.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine

from connector.adapters.base import CrmAdapter
from connector.adapters.http import RetryPolicy
from connector.config import Connection, LoadedSettings
from connector.errors import ConfigError
from connector.mapping import load_mapping
from connector.mapping.models import Mapping
from connector.sync.budget import ApiBudget
from connector.sync.pull import specs
from connector.sync.runner import SyncEngine
from connector.timeutil import zone


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
