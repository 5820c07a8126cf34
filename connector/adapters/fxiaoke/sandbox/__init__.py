"""A faithful local emulator of the Fxiaoke Open API (see docs/fxiaoke.md for what it models)."""

from connector.adapters.fxiaoke.sandbox.app import SandboxApp, SandboxConfig
from connector.adapters.fxiaoke.sandbox.limits import SandboxClock
from connector.adapters.fxiaoke.sandbox.server import FxiaokeSandbox, SandboxTransport, serve

__all__ = ["FxiaokeSandbox", "SandboxApp", "SandboxClock", "SandboxConfig", "SandboxTransport", "serve"]
