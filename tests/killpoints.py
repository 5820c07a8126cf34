"""Stop a child process at an exact point of its work, never after a guessed time.

Two kinds of point:

- a request to the in-process Zoho sandbox (`SandboxTap`): the tap sits in the sandbox's request
  handler, so when the child's n-th request arrives the child is blocked waiting for the answer.
  `before`: the child is SIGKILLed and the request never applied; `after`: the request is applied
  (a write lands in the CRM) and the child dies before it hears the answer. `pause` holds the
  request until the test has done something (sent a signal) and lets it go on.
- a point in our own code (`connector.testpoints`, via `kill_env`): the child SIGKILLs itself there.

Every wait has a timeout that fails with a message saying what did not happen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector import testpoints
from connector.adapters.zoho.sandbox.app import Reply

WAIT = 120.0  # seconds any single wait may take before the test fails: generous for a loaded machine


def kill_env(point: str, nth: int = 1) -> dict[str, str]:
    """Environment that makes a child SIGKILL itself the `nth` time it reaches `point`."""
    spec = f"{point}@{nth}"
    testpoints.parse(spec)
    return {testpoints.ENV: spec}


def wait_until(pred: Callable[[], Any], what: str, timeout: float = WAIT, every: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def wait_event(event: threading.Event, what: str, timeout: float = WAIT) -> None:
    """Block until `event` is set; fail naming `what` after `timeout` seconds."""
    if not event.wait(timeout):
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class _Arm:
    nth: int
    mode: str  # "before", "after" or "pause"
    match: Callable[[str, str], bool]
    seen: int = 0


class SandboxTap:
    """Wraps a sandbox app's `handle`: counts requests and stops the client at an armed one."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.reached = threading.Event()  # the armed request arrived (and, for a kill, the child is dead)
        self.release = threading.Event()  # a paused request goes on once this is set
        self._arm: _Arm | None = None
        self._proc: subprocess.Popen[Any] | None = None
        self._attached = threading.Event()
        self._lock = threading.Lock()
        self._handle = app.handle
        app.handle = self._tapped

    def arm(self, nth: int, mode: str, match: Callable[[str, str], bool] = lambda method, path: True) -> None:
        """Stop at the `nth` request that `match(method, path)` accepts from now on.

        `before`/`after` SIGKILL the attached process before/after the sandbox applies it; `pause`
        holds it until `release` is set. Arm before starting the process and `attach` it once started,
        so that no request can slip past the point."""
        if mode not in ("before", "after", "pause"):
            raise ValueError(f"mode must be before, after or pause, not {mode!r}")
        with self._lock:
            self._arm = _Arm(nth, mode, match)
            self._proc = None
            self._attached.clear()
            self.reached.clear()
            self.release.clear()

    def attach(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """The process an armed kill is for (returned, to wrap a `Popen(...)` call)."""
        self._proc = proc
        self._attached.set()
        return proc

    def disarm(self) -> None:
        """Stop nothing any more (and let a paused request go on)."""
        with self._lock:
            self._arm = None
        self.release.set()

    def _tapped(self, method: str, path: str, *rest: Any) -> Any:
        with self._lock:
            self.requests.append((method, path))
            arm, hit = self._arm, False
            if arm is not None and arm.match(method, path):
                arm.seen += 1
                hit = arm.seen == arm.nth
                if hit:
                    self._arm = None
        if not hit or arm is None:
            return self._handle(method, path, *rest)
        if arm.mode == "pause":
            self.reached.set()
            wait_event(self.release, "the test to release a paused sandbox request")
            return self._handle(method, path, *rest)
        if arm.mode == "after":
            self._handle(method, path, *rest)  # the request takes effect in the CRM; its answer is never sent
        wait_event(self._attached, "the test to attach the process to kill")
        self._kill(self._proc)
        self.reached.set()
        return Reply(500, drop=True)  # the child is dead: close the connection instead of answering

    @staticmethod
    def _kill(proc: subprocess.Popen[Any] | None) -> None:
        assert proc is not None
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=WAIT)  # dead before the handler answers: the child cannot act on the reply
