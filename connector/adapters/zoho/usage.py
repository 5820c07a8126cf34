"""What Zoho calls cost: the usage meter and the credit price of writes and COQL reads."""

from __future__ import annotations

import math
import threading

from connector.adapters.base import ApiUsage


class UsageMeter:
    """Counts calls and credits per call type, and keeps the last X-API-CREDITS-REMAINING."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.credits = 0
        self.by_type: dict[str, int] = {}
        self.remaining: int | None = None

    def add(self, call_type: str, credits: int, charged: bool) -> None:
        """Record one HTTP call; `charged` says whether Zoho counts its credits."""
        with self._lock:
            self.calls += 1
            self.by_type[f"{call_type}:calls"] = self.by_type.get(f"{call_type}:calls", 0) + 1
            if charged:
                self.credits += credits
                self.by_type[f"{call_type}:credits"] = self.by_type.get(f"{call_type}:credits", 0) + credits

    def snapshot(self) -> ApiUsage:
        """An `ApiUsage` copy for the adapter boundary."""
        with self._lock:
            return ApiUsage(calls=self.calls, credits=self.credits, by_type=dict(self.by_type),
                            remaining=self.remaining)


def write_credits(count: int) -> int:
    """Insert/update/upsert cost 1 credit per 10 records."""
    return max(1, math.ceil(count / 10))


def coql_credits(limit: int) -> int:
    """COQL costs 1, 2 or 3 credits by LIMIT band (1-200, 201-1000, 1001-2000)."""
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3

