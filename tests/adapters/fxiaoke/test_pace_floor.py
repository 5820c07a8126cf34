"""The floor benchmarks print their Fxiaoke times against: 100 calls per 20 s per path, a sliding window."""

from __future__ import annotations

import pytest

from connector.adapters.fxiaoke.client import PathPacer, pace_floor


@pytest.mark.parametrize(("calls", "floor"), [(0, 0.0), (1, 0.0), (100, 0.0), (101, 20.0), (200, 20.0),
                                               (201, 40.0), (501, 100.0), (1000, 180.0)])
def test_pace_floor_lets_the_first_100_go_at_once_then_100_per_window(calls: int, floor: float) -> None:
    assert pace_floor(calls) == floor


def test_the_pacer_with_no_margin_meets_the_floor_exactly() -> None:
    now = [0.0]
    pacer = PathPacer(100, 20.0, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s), margin=0.0)
    for _ in range(501):
        pacer.acquire("/cgi/crm/v2/data/query")
    assert now[0] == pace_floor(501) == 100.0
