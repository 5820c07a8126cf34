"""Money and dates for people: grouped digits, the currency's decimals and symbol, a display time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from connector.money import from_minor

SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$", "TWD": "NT$",
           "SGD": "S$", "AUD": "A$", "CAD": "C$", "KRW": "₩", "INR": "₹", "MOP": "MOP$"}


def money(minor: int, currency: str, *, symbol: bool = True) -> str:
    """`¥1,234.50`, `-$12.00`, `JPY` without decimals; other currencies as `CHF 1,234.50`."""
    text = f"{abs(from_minor(minor, currency)):,}"
    sign = "-" if minor < 0 else ""
    if not symbol:
        return sign + text
    sym = SYMBOLS.get(currency)
    return f"{sign}{sym}{text}" if sym else f"{sign}{currency} {text}"


def day(value: datetime | None, tz: ZoneInfo) -> str:
    """The date of `value` in `tz` (YYYY-MM-DD), or an empty string."""
    return value.astimezone(tz).date().isoformat() if value else ""
