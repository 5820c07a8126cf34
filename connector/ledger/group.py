"""Group commit: concurrent `post` calls of one process share one transaction and one durable commit.

A caller queues its request. If no commit is running, it becomes the leader: it takes what is queued
(its own request among them, oldest first, up to `max_group`), runs them through `post_batch` in one
transaction, and hands each caller its own outcome after the commit. Callers that queue while a
commit runs wait (on a condition, never a timer) and form the next group. Nobody waits for
followers: a lone caller commits at once, so a single poster pays what `Ledger.post` pays.

The rules do not change: requests run in arrival order (so one customer's postings apply in the
order their callers queued them), a refusal stays with its own request, a key repeated in a group
answers as a replay of the first (or a conflict), and no caller hears back before its posting is
durable. If the group's transaction fails as a whole (not a refusal), each request runs again alone,
so one bad request cannot fail the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.ledger.planners import Request
    from connector.ledger.service import BatchOutcome, PostingResult

MAX_GROUP = 256  # a group is one transaction: bounds its locks, memory and the time a commit holds them


class _Ticket:
    """One queued request and, once its group committed, its answer."""

    __slots__ = ("request", "result", "error", "done")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.result: PostingResult | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommitter:
    """Runs concurrent postings in groups: `post(req)` answers what `Ledger.post(req)` would."""

    def __init__(self, run_batch: Callable[[Sequence[Request]], list[BatchOutcome]],
                 run_one: Callable[[Request], PostingResult], *, max_group: int = MAX_GROUP) -> None:
        self.run_batch = run_batch  # `Ledger.post_batch` (without a hook)
        self.run_one = run_one  # the one-request path, for a group whose transaction failed
        self.max_group = max_group
        self._cond = threading.Condition()
        self._queue: deque[_Ticket] = deque()
        self._leading = False
        self.groups = 0  # commits made (with `posted`, for the average group size)
        self.posted = 0

    def post(self, request: Request) -> PostingResult:
        """Queue `request`, commit it with what is queued alongside it; answer it or raise its refusal."""
        ticket = _Ticket(request)
        with self._cond:
            self._queue.append(ticket)
            self._cond.notify_all()  # `wait_pending` watchers; waiting callers re-check and sleep again
            while True:
                while self._leading and not ticket.done:
                    self._cond.wait()
                if ticket.done:
                    break
                self._leading = True
                group = [self._queue.popleft() for _ in range(min(self.max_group, len(self._queue)))]
                self._cond.release()
                try:
                    self._commit(group)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def wait_pending(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` requests are queued behind a running commit (tests, monitoring)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._queue) >= count, timeout)

    def _commit(self, group: list[_Ticket]) -> None:
        """Run one group; every ticket in it ends `done` with a result or an error, whatever happens."""
        try:
            outcomes = self.run_batch([t.request for t in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                for ticket in group:
                    self._alone(ticket)
        else:
            for ticket, outcome in zip(group, outcomes, strict=True):
                ticket.result, ticket.error = outcome.result, outcome.error
        finally:
            for ticket in group:
                if ticket.result is None and ticket.error is None:  # interrupted (KeyboardInterrupt...)
                    ticket.error = RuntimeError("the group commit was interrupted; the posting's state is "
                                                "unknown: post it again with the same key")
                ticket.done = True
            self.groups += 1
            self.posted += len(group)

    def _alone(self, ticket: _Ticket) -> None:
        """One request in its own transaction (its refusal or failure is its own)."""
        try:
            ticket.result = self.run_one(ticket.request)
        except Exception as exc:
            ticket.error = exc
