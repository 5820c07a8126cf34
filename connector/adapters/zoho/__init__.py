"""Zoho CRM v8: OAuth, REST client, adapter to domain records, and a local sandbox."""

from connector.adapters.zoho.adapter import ZohoAdapter, default_specs
from connector.adapters.zoho.auth import DATA_CENTERS, ZohoAuth, ZohoAuthConfig, ZohoCredentials
from connector.adapters.zoho.client import ZohoClient

__all__ = ["DATA_CENTERS", "ZohoAdapter", "ZohoAuth", "ZohoAuthConfig", "ZohoClient", "ZohoCredentials",
           "default_specs"]
