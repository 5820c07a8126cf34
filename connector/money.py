"""Money: Decimal amounts quantized to the currency's ISO 4217 minor unit, never floats.

The ledger stores integer minor units; this module is the only place that converts.
"""

from __future__ import annotations

import decimal
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from connector.errors import InvalidInput

# ISO 4217 minor units (exponents). Currencies not listed here are refused rather than guessed.
MINOR_UNITS: dict[str, int] = {
    "AED": 2, "ARS": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2,
    "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2,
    "ILS": 2, "INR": 2, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "LYD": 3,
    "MOP": 2, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PKR": 2, "PLN": 2,
    "QAR": 2, "RON": 2, "RUB": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2,
    "TWD": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}

# A context that traps float mixing and inexact conversions we did not ask for.
_CTX = decimal.Context(prec=38, rounding=ROUND_HALF_EVEN, traps=[decimal.FloatOperation, InvalidOperation])


def currency_code(value: str) -> str:
    """Normalize and check an ISO 4217 code (`cny` -> `CNY`)."""
    code = (value or "").strip().upper()
    if code not in MINOR_UNITS:
        raise InvalidInput(f"unknown currency {value!r}: use an ISO 4217 code such as CNY, USD, EUR or JPY",
                           field="currency", value=value)
    return code


def exponent(currency: str) -> int:
    """Digits after the decimal point for a currency."""
    return MINOR_UNITS[currency_code(currency)]


def parse_amount(value: object, currency: str, *, field: str = "amount", allow_zero: bool = False,
                 allow_negative: bool = False) -> Decimal:
    """Parse a money amount exactly and check it fits the currency's minor unit.

    Accepts `Decimal`, `int` and strings; refuses floats, NaN, infinities and amounts with more
    digits than the currency allows (``10.005 CNY`` is an error, not a silent rounding).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{field}: floats are not accepted for money ({value!r}); pass a decimal string",
                           field=field, value=value)
    if type(value) is str and currency in MINOR_UNITS:
        fast = _fast_amount(value, MINOR_UNITS[currency], field, allow_zero, allow_negative)
        if fast is not None:
            return fast
    try:
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, int):
            amount = Decimal(value)
        elif isinstance(value, str):
            amount = Decimal(value.strip().replace(",", "").replace("_", ""))
        else:
            raise InvalidInput(f"{field}: expected a decimal amount, got {type(value).__name__}", field=field)
    except InvalidOperation:
        raise InvalidInput(f"{field}: {value!r} is not a decimal amount", field=field, value=value) from None
    if not amount.is_finite():
        raise InvalidInput(f"{field}: {value!r} is not a finite amount", field=field, value=value)
    exp = exponent(currency)
    quantum = Decimal(1).scaleb(-exp)
    quantized = amount.quantize(quantum, context=_CTX)
    if quantized != amount:
        raise InvalidInput(f"{field}: {value} has more than {exp} decimal places for {currency_code(currency)}",
                           field=field, value=value)
    if quantized == 0 and not allow_zero:
        raise InvalidInput(f"{field}: must not be zero", field=field, value=value)
    if quantized < 0 and not allow_negative:
        raise InvalidInput(f"{field}: must be positive, got {value}", field=field, value=value)
    return quantized


_PLAIN = re.compile(r"(-?)(\d{1,30})(?:\.(\d+))?")


def _fast_amount(text: str, exp: int, field: str, allow_zero: bool, allow_negative: bool) -> Decimal | None:
    """The common case (`"1234.5"`) without the general parser; None hands over to it."""
    m = _PLAIN.fullmatch(text)
    if m is None or (m.group(3) is not None and len(m.group(3)) > exp):
        return None
    amount = Decimal(text)
    if amount == 0 and not allow_zero or amount < 0 and not allow_negative:
        return None
    return amount.quantize(Decimal(1).scaleb(-exp)) if exp else amount.quantize(Decimal(1))


def to_minor(amount: Decimal, currency: str) -> int:
    """Decimal (already quantized) -> integer minor units."""
    return int(amount.scaleb(exponent(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units -> Decimal with exactly the currency's decimal places."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def fmt(minor: int, currency: str) -> str:
    """A decimal string for JSON and tables (`'1234.50'`), computed in integers."""
    exp = MINOR_UNITS.get(currency)
    if exp is None:
        exp = exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split integer `total` across `weights` by largest remainder; the parts sum exactly to `total`."""
    if not weights:
        return []
    wsum = sum(weights)
    if wsum == 0:
        return [0] * len(weights)
    shares = [total * w // wsum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % wsum), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
