"""The debouncer: a burst of notices is one run, notices during a run are one follow-up, a locked
connection is tried again; time is a fake clock and runs are started by hand (no sleeping)."""

from __future__ import annotations

from collections.abc import Callable

from connector.push.debounce import LOCKED, Debouncer


class Harness:
    """A debouncer on a fake clock whose runs wait in `started` until the test lets them finish."""

    def __init__(self, results: list[str] | None = None, **kw: float) -> None:
        self.now = 0.0
        self.runs: list[str] = []
        self.results = list(results or [])
        self.started: list[Callable[[], None]] = []
        self.d = Debouncer(self._run, clock=lambda: self.now, spawn=self.started.append,
                           **kw)  # type: ignore[arg-type]

    def _run(self, key: str) -> str:
        self.runs.append(key)
        return self.results.pop(0) if self.results else "ok"

    def finish_all(self) -> None:
        while self.started:
            self.started.pop(0)()


def test_a_burst_of_notices_is_one_run() -> None:
    h = Harness(quiet=0.5, max_delay=3.0)
    for _ in range(10):
        h.d.notify("main")
        h.now += 0.1
        assert h.d.tick() is not None and not h.started  # still inside the quiet window
    h.now += 0.5
    assert h.d.tick() is None
    h.finish_all()
    assert h.runs == ["main"] and h.d.runs == 1 and not h.d.pending()


def test_a_steady_stream_still_runs_within_the_max_delay() -> None:
    h = Harness(quiet=0.5, max_delay=3.0)
    while h.now < 2.95:
        h.d.notify("main")
        h.d.tick()
        h.now += 0.25
    assert not h.started
    h.now = 3.0
    h.d.tick()
    assert len(h.started) == 1


def test_notices_during_a_run_make_exactly_one_follow_up() -> None:
    h = Harness(quiet=0.5, max_delay=3.0)
    h.d.notify("main")
    h.now = 0.5
    h.d.tick()
    assert len(h.started) == 1  # running (not finished yet)
    for _ in range(5):
        h.now += 0.2
        h.d.notify("main")
        assert h.d.tick() is None and len(h.started) == 1  # no second run while one is going
    h.finish_all()
    h.now += 0.5
    h.d.tick()
    h.finish_all()
    h.now += 10
    h.d.tick()
    assert h.runs == ["main", "main"] and not h.started


def test_a_locked_connection_is_tried_again_then_left_to_polling() -> None:
    h = Harness(results=[LOCKED, LOCKED, "ok"], quiet=0.5, retry_after=2.0)
    h.d.notify("main")
    h.now = 0.5
    h.d.tick()
    h.finish_all()  # locked
    h.now += 1.9
    h.d.tick()
    assert not h.started  # not before retry_after
    h.now += 0.1
    h.d.tick()
    h.finish_all()  # locked again
    h.now += 2.0
    h.d.tick()
    h.finish_all()  # ran
    h.now += 100
    h.d.tick()
    assert h.runs == ["main"] * 3 and not h.d.pending()
    give_up = Harness(results=[LOCKED] * 5, quiet=0.5, retry_after=1.0, max_retries=2)
    give_up.d.notify("main")
    for _ in range(10):
        give_up.now += 1.0
        give_up.d.tick()
        give_up.finish_all()
    assert give_up.runs == ["main"] * 3 and not give_up.d.pending()


def test_connections_are_debounced_apart() -> None:
    h = Harness(quiet=0.5)
    h.d.notify("a")
    h.now = 0.3
    h.d.notify("b")
    h.now = 0.5
    h.d.tick()
    assert len(h.started) == 1
    h.now = 0.8
    h.d.tick()
    h.finish_all()
    assert sorted(h.runs) == ["a", "b"]


def test_a_failing_run_does_not_stop_later_ones() -> None:
    calls: list[str] = []

    def run(key: str) -> str:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "ok"

    d = Debouncer(run, quiet=0.01, max_delay=0.05)
    d.start()
    try:
        d.notify("main")
        assert d.wait_idle(5)
        d.notify("main")
        assert d.wait_idle(5)
    finally:
        d.close()
    assert calls == ["main", "main"]


def test_on_its_own_thread_a_burst_is_still_one_run() -> None:
    calls: list[str] = []
    d = Debouncer(lambda key: calls.append(key) or "ok", quiet=0.2, max_delay=5.0)
    d.start()
    try:
        for _ in range(50):
            d.notify("main")
        assert d.wait_idle(5)
    finally:
        d.close()
    assert calls == ["main"]
