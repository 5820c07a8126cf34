"""A local emulator of Zoho CRM v8 (accounts server + API) for tests, demos and benchmarks."""

from connector.adapters.zoho.sandbox.app import SandboxApp, SandboxConfig
from connector.adapters.zoho.sandbox.server import InProcessTransport, ZohoSandbox, serve
from connector.adapters.zoho.sandbox.store import Org

__all__ = ["InProcessTransport", "Org", "SandboxApp", "SandboxConfig", "ZohoSandbox", "serve"]
