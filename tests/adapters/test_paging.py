"""The paginator both CRM clients page with: it moves on, finishes, and refuses to read a page twice."""

from __future__ import annotations

import pytest

from connector.adapters.errors import ServerError
from connector.adapters.paging import PagingLoop, Paginator
from connector.errors import is_retriable


def test_advance_moves_on_and_counts_pages() -> None:
    pages: Paginator[int] = Paginator(1, crm="zoho", what="Accounts")
    pages.advance(2)
    pages.advance(3)
    assert (pages.current, pages.pages, pages.finished) == (3, 2, False)
    pages.finish()
    assert pages.finished and pages.pages == 3
    with pytest.raises(RuntimeError, match="already finished"):
        pages.advance(4)


def test_a_repeated_token_is_refused_naming_the_stream_and_the_token() -> None:
    pages: Paginator[str | None] = Paginator(None, crm="fxiaoke", what="PaymentObj", request="POST /x/query",
                                             show=lambda last: f"_id {last!r}")
    pages.advance("a1")
    with pytest.raises(PagingLoop) as info:
        pages.advance("a1")
    error = info.value
    assert error.message == ("PaymentObj: paging did not advance: the answer names _id 'a1', the page just "
                             "read, as the next one")
    assert str(error) == f"fxiaoke {error.message} [POST /x/query]"
    assert isinstance(error, ServerError) and is_retriable(error)  # the CRM's fault; a later run may page
    assert (error.crm, error.request, pages.current) == ("fxiaoke", "POST /x/query", "a1")


def test_positions_compare_as_values() -> None:
    pages: Paginator[tuple[str | None, int]] = Paginator((None, 1), crm="zoho", what="Deals")
    pages.advance(("t1", 1))
    pages.advance((None, 2))  # a different position, even on the same page number
    with pytest.raises(PagingLoop):
        pages.advance((None, 2))
