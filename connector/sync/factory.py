"""Build the CRM adapter a connection names, with EntitySpecs from its mapping (the only vendor switch)."""

from __future__ import annotations

from connector.adapters.base import CrmAdapter
from connector.adapters.http import RetryPolicy
from connector.config import Connection
from connector.domain import Entity
from connector.mapping.models import Mapping
from connector.sync.pull import specs

_ENTITY = {"customers": Entity.CUSTOMER, "contracts": Entity.CONTRACT, "payments": Entity.PAYMENT,
           "consumption": Entity.CONSUMPTION}


def build_adapter(conn: Connection, mapping: Mapping, retry: RetryPolicy | None = None) -> CrmAdapter:
    """A Zoho or Fxiaoke adapter for `conn`; secrets come from the environment variables it names."""
    retry = retry or RetryPolicy(max_attempts=conn.retry_attempts)
    by_entity = {_ENTITY[name]: spec for name, spec in specs(mapping).items()}
    names = conn.env_names()
    if conn.crm == "zoho":
        from connector.adapters.zoho import ZohoAdapter, ZohoAuth, ZohoAuthConfig, ZohoClient

        config = ZohoAuthConfig(data_center=conn.data_center, accounts_url=conn.accounts_url,
                                api_domain=conn.api_domain, client_id_env=names["client_id"],
                                client_secret_env=names["client_secret"], refresh_token_env=names["refresh_token"])
        client = ZohoClient(ZohoAuth.from_env(config), retry=retry)
        return ZohoAdapter(client, specs=by_entity, default_currency=mapping.currency)
    from connector.adapters.fxiaoke import FxiaokeAdapter, FxiaokeTaskTarget

    target = FxiaokeTaskTarget.custom_object(mapping.tasks.target) if mapping.tasks.target else None
    assert conn.base_url is not None
    return FxiaokeAdapter.from_env(conn.base_url, env_names=names, open_user_id=conn.open_user_id,
                                   currency=mapping.currency or "CNY", task_target=target, retry=retry)
