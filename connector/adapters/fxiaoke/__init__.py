"""Fxiaoke (纷享销客 / ShareCRM) adapter: client, auth, adapter; the emulator lives in `sandbox`."""

from connector.adapters.fxiaoke.adapter import (
           DEFAULT_SPECS,
           FxiaokeAdapter,
           FxiaokeTaskTarget,
)
from connector.adapters.fxiaoke.auth import FxiaokeAuth, FxiaokeCredentials
from connector.adapters.fxiaoke.client import FxiaokeClient

__all__ = ["DEFAULT_SPECS", "FxiaokeAdapter", "FxiaokeAuth", "FxiaokeClient", "FxiaokeCredentials",
           "FxiaokeTaskTarget"]
