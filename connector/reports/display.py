"""Money and dates for people: grouped digits, the currency's decimals and symbol, a display time zone."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from connector.money import MINOR_UNITS, from_minor

# CNY and JPY share the sign ¥; the documents write CN¥ and JP¥ (as CLDR's English locale does for the
# currency that is not the reader's own), so a statement or report mixing both can never be misread.
SYMBOLS = {"CNY": "CN¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$", "TWD": "NT$",
           "SGD": "S$", "AUD": "A$", "CAD": "C$", "KRW": "₩", "INR": "₹", "MOP": "MOP$"}


def money(minor: int, currency: str, *, symbol: bool = True) -> str:
    """`CN¥1,234.50`, `-$12.00`, `JP¥1,200` (no decimals); other currencies as `CHF 1,234.50`."""
    exp = MINOR_UNITS.get(currency)
    if exp is None:  # an unknown code: from_minor says so
        text = f"{abs(from_minor(minor, currency)):,}"
    else:  # in integers (the same text as the Decimal's, without building one per amount)
        whole, frac = divmod(abs(minor), 10**exp)
        text = f"{whole:,}.{frac:0{exp}d}" if exp else f"{whole:,}"
    sign = "-" if minor < 0 else ""
    if not symbol:
        return sign + text
    sym = SYMBOLS.get(currency)
    return f"{sign}{sym}{text}" if sym else f"{sign}{currency} {text}"


def day(value: datetime | None, tz: ZoneInfo) -> str:
    """The date of `value` in `tz` (YYYY-MM-DD), or an empty string."""
    return value.astimezone(tz).date().isoformat() if value else ""


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def human_day(value: datetime | date | None, tz: ZoneInfo | None = None, lang: str = "en") -> str:
    """A date as people write it: `21 Jul 2026`, in Chinese `2026年7月21日`; '' for none."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(tz).date() if tz is not None else value.date()
    if lang == "zh":
        return f"{value.year}年{value.month}月{value.day}日"
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def human_time(value: datetime, tz: ZoneInfo, lang: str = "en") -> str:
    """Date and minute in `tz`: `21 Jul 2026, 09:30`."""
    local = value.astimezone(tz)
    return f"{human_day(local, tz, lang)}{' ' if lang == 'zh' else ', '}{local:%H:%M}"


def who(name: str | None, key: str) -> str:
    """A customer for people: the CRM name first, the key second (`Acme Ltd (zoho:Accounts:1)`)."""
    return f"{name} ({key})" if name and name != key else key
