"""`timeutil.zone`: the one helper that turns a zone name into a zone, for config, reports and the sync."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from connector.config import check_timezone
from connector.errors import InvalidInput
from connector.timeutil import zone


def test_a_name_is_its_iana_zone() -> None:
    assert zone("Asia/Shanghai") == ZoneInfo("Asia/Shanghai")


def test_no_name_takes_the_default_then_the_machine_zone() -> None:
    assert zone(None, default="UTC") == ZoneInfo("UTC")
    assert zone("", default="Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    assert isinstance(zone(None), ZoneInfo)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "Asia/Shanghai "])
def test_an_unknown_name_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        zone(name, "tz")
    assert info.value.exit_code == 2
    assert info.value.message.startswith(f"tz: {name!r} is not an IANA time zone")


def test_config_reports_the_same_refusal_to_pydantic() -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone"):
        check_timezone("Mars/Olympus")
