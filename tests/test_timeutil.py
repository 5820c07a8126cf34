"""`connector.timeutil`: ISO dates and date-times in, aware UTC out, inside one documented range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from connector import timeutil
from connector.errors import InvalidInput

CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    "raw,want",
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("  2026-03-01  ", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T10:00:00+08:00", datetime(2026, 3, 1, 2, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01 10:00:00", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),  # a space for the T; naive is UTC
        ("2026-03-01T10:00", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T23:30:00-05:00", datetime(2026, 3, 2, 4, 30, tzinfo=UTC)),
    ],
)
def test_parse_datetime_ends_in_aware_utc(raw: str, want: datetime) -> None:
    got = timeutil.parse_datetime(raw, "at")
    assert got == want and got is not None and got.tzinfo == UTC


def test_a_bare_date_at_end_of_day_is_the_start_of_the_next_day() -> None:
    assert timeutil.parse_datetime("2026-03-31", "expires_at", end_of_day=True) == datetime(
        2026, 4, 1, tzinfo=UTC
    )
    assert timeutil.parse_datetime(date(2026, 12, 31), "expires_at", end_of_day=True) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    # A full date-time is taken as it is.
    assert timeutil.parse_datetime("2026-03-31T12:00:00Z", "expires_at", end_of_day=True) == datetime(
        2026, 3, 31, 12, tzinfo=UTC
    )


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_is_none(blank: str | None) -> None:
    assert timeutil.parse_datetime(blank, "at") is None
    assert timeutil.parse_date(blank, "day") is None


def test_datetime_and_date_objects_are_checked_and_converted() -> None:
    assert timeutil.parse_datetime(datetime(2026, 3, 1, 10, tzinfo=CST), "at") == datetime(
        2026, 3, 1, 2, tzinfo=UTC
    )
    assert timeutil.parse_datetime(datetime(2026, 3, 1, 10), "at") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert timeutil.parse_datetime(date(2026, 3, 1), "at") == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    ["2026-13-01", "2026-02-30", "yesterday", "2026/03/01", "２０２６-03-01", "2026-03-01T25:00", "2026-3-1"],
)
def test_not_iso_is_refused_naming_the_field_and_an_example(raw: str) -> None:
    with pytest.raises(
        InvalidInput, match=r"^paid_at: .* is not an ISO 8601 date or date-time \(e\.g\. 2026-03-31"
    ):
        timeutil.parse_datetime(raw, "paid_at")


@pytest.mark.parametrize(
    "raw",
    ["1969-12-31", "1969-12-31T23:59:59Z", "9999-01-01T00:00:01Z", "9999-12-31", "0001-01-01T00:00:00+05:00"],
)
def test_outside_the_range_is_refused_with_the_range(raw: str) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"^at: .* is outside the supported range: dates and times from "
        r"1970-01-01 to 9998-12-31 \(UTC\)$",
    ) as info:
        timeutil.parse_datetime(raw, "at")
    assert info.value.details == {"field": "at"}


def test_the_range_edges_are_inside() -> None:
    assert timeutil.parse_datetime("1970-01-01", "at") == timeutil.EARLIEST
    assert timeutil.parse_datetime("9998-12-31", "at", end_of_day=True) == timeutil.LATEST
    assert timeutil.parse_date("9998-12-31", "day") == timeutil.LAST_DAY
    # 9998-12-31 in Shanghai is still inside once converted to UTC.
    assert timeutil.parse_datetime("9998-12-31T23:00:00+08:00", "at") == datetime(
        9998, 12, 31, 15, tzinfo=UTC
    )


def test_an_expiry_out_of_range_says_how_to_keep_money_that_never_expires() -> None:
    with pytest.raises(InvalidInput, match="to keep money that never expires, leave the expiry out"):
        timeutil.parse_datetime("9999-12-31", "expires_at")
    with pytest.raises(InvalidInput) as info:
        timeutil.parse_datetime("9999-12-31", "paid_at")
    assert "never expires" not in str(info.value)


def test_parse_date() -> None:
    assert timeutil.parse_date(" 2026-03-31 ", "day") == date(2026, 3, 31)
    assert timeutil.parse_date(date(2026, 3, 31), "day") == date(2026, 3, 31)
    with pytest.raises(InvalidInput, match=r"^day: '2026-03-31T00:00' is not an ISO date \(YYYY-MM-DD\)$"):
        timeutil.parse_date("2026-03-31T00:00", "day")
    with pytest.raises(InvalidInput, match="outside the supported range"):
        timeutil.parse_date("1969-12-31", "day")


def test_check_range_and_check_day() -> None:
    assert timeutil.check_range(datetime(2026, 1, 1, 8, tzinfo=CST), "at") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="'shown as typed' is outside"):
        timeutil.check_range(datetime(1900, 1, 1, tzinfo=UTC), "at", shown="shown as typed")
    assert timeutil.check_day(datetime(2026, 1, 1, tzinfo=UTC), "day") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="outside"):
        timeutil.check_day(date(9999, 1, 1), "day")
