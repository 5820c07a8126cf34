"""Paging written once: a small object that holds where a read is and refuses to go round in circles.

Each client makes a fresh `Paginator` per read, asks `current` for the page to request, and calls
`advance(next)` with the position the answer names (a page token, a page number, the last key seen),
or `finish()` when the answer says there is no more. A CRM that names the page it just served as the
next one would make the read loop for ever, re-reading (and re-charging) the same page; `advance`
raises `PagingLoop` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from connector.adapters.errors import ServerError

T = TypeVar("T")


class PagingLoop(ServerError):
    """The CRM's paging did not advance: the next page it named is the one just read."""


class Paginator(Generic[T]):
    """Where a paged read is (`current`), whether it is done (`finished`), and how many pages it read."""

    def __init__(self, start: T, *, crm: str, what: str, request: str = "",
                 show: Callable[[T], str] = repr) -> None:
        self.current: T = start
        self.finished = False
        self.pages = 0
        self._crm = crm
        self._what = what
        self._request = request
        self._show = show

    def advance(self, next_value: T) -> None:
        """Move on to `next_value`; raise `PagingLoop` when it repeats the current position."""
        if self.finished:
            raise RuntimeError(f"{self._what}: paging already finished")
        if next_value == self.current:
            named = self._show(next_value)
            raise PagingLoop(f"{self._what}: paging did not advance: the answer names {named}, the page just "
                             "read, as the next one", crm=self._crm, request=self._request)
        self.pages += 1
        self.current = next_value

    def finish(self) -> None:
        """The last page was read."""
        self.pages += 1
        self.finished = True
