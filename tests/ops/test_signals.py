"""`connector.ops.signals.stop_signals`: the first SIGTERM/SIGINT asks for a stop, a second exits 1 at once.

In-process tests deliver real signals to this process (Python runs the handler in the main thread at
the next bytecode boundary, before `os.kill` returns to the test); the exit-1 path runs in a child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from connector.ops.signals import stop_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_calls_on_first_and_should_stop_names_it(sig: signal.Signals) -> None:
    firsts: list[str] = []
    with stop_signals(firsts.append) as should_stop:
        assert should_stop() is None
        os.kill(os.getpid(), sig)
        assert firsts == [sig.name]
        assert should_stop() == sig.name


def test_previous_handlers_come_back_after_the_block() -> None:
    mine = lambda signum, frame: None  # noqa: E731
    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with stop_signals(lambda name: None):
            assert signal.getsignal(signal.SIGTERM) is not mine
            assert signal.getsignal(signal.SIGINT) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_handlers_come_back_when_the_block_raises() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError, match="boom"), stop_signals(lambda name: None):
        raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGTERM) is before


CHILD = textwrap.dedent("""
    import os, signal, sys
    from connector.ops.signals import stop_signals
    with stop_signals(lambda n: print("first", n, flush=True),
                      lambda n: print("second", n, flush=True)) as should_stop:
        os.kill(os.getpid(), signal.SIG{first})
        print("still running, stop asked by", should_stop(), flush=True)
        os.kill(os.getpid(), signal.SIG{second})
        print("not reached", flush=True)
    print("not reached either", flush=True)
""")


@pytest.mark.parametrize("first,second", [("TERM", "TERM"), ("TERM", "INT"), ("INT", "TERM")])
def test_a_second_signal_calls_on_second_then_exits_1(first: str, second: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(first=first, second=second)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"first SIG{first}",
        f"still running, stop asked by SIG{first}",
        f"second SIG{second}",
    ]


def test_after_the_block_a_signal_no_longer_reaches_the_callbacks() -> None:
    firsts: list[str] = []
    with stop_signals(firsts.append):
        pass
    previous = signal.signal(signal.SIGTERM, lambda s, f: firsts.append("outer"))
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert firsts == ["outer"]
