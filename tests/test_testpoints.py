"""`connector.testpoints`: a named point SIGKILLs the process only on the arrival the variable names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from connector import testpoints

CHILD = (
    "from connector import testpoints\n"
    "for i in range(3):\n"
    "    testpoints.reach('ledger.batch_written'); print('written', i, flush=True)\n"
    "    testpoints.reach('ledger.batch_committed'); print('committed', i, flush=True)\n"
)


def run_child(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != testpoints.ENV}
    if spec is not None:
        env[testpoints.ENV] = spec
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)


def test_without_the_variable_nothing_stops() -> None:
    done = run_child(None)
    assert done.returncode == 0 and done.stdout.count("committed") == 3


@pytest.mark.parametrize(
    "spec,printed",
    [
        ("ledger.batch_written", []),
        ("ledger.batch_written@1", []),
        ("ledger.batch_committed@1", ["written 0"]),
        ("ledger.batch_written@3", ["written 0", "committed 0", "written 1", "committed 1"]),
        ("ledger.batch_committed@2", ["written 0", "committed 0", "written 1"]),
    ],
)
def test_the_named_arrival_kills_the_process_there(spec: str, printed: list[str]) -> None:
    done = run_child(spec)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.splitlines() == printed


def test_an_arrival_after_the_last_one_reached_never_fires() -> None:
    done = run_child("ledger.batch_committed@4")
    assert done.returncode == 0 and done.stdout.count("committed") == 3


@pytest.mark.parametrize(
    "spec", ["ledger.nowhere", "ledger.batch_written@0", "ledger.batch_written@x", "@2", ""]
)
def test_a_bad_spec_is_refused_naming_the_variable(spec: str) -> None:
    with pytest.raises(ValueError, match=r"PREPAID_SYNC_KILL_AT=.*expected one of ledger\.batch_committed"):
        testpoints.parse(spec)


def test_parse_reads_the_point_and_the_arrival() -> None:
    assert testpoints.parse("ledger.batch_committed") == ("ledger.batch_committed", 1)
    assert testpoints.parse("ledger.batch_written@12") == ("ledger.batch_written", 12)
