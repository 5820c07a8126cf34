"""Money: Decimal amounts quantized to the currency's ISO 4217 minor unit, never floats.

The ledger stores integer minor units; this module is the only place that converts. Every
amount that enters prepaid-sync (CLI arguments, CSV rows, mapping and config values, CRM
payloads, the HTTP API) is read by `parse_amount`, which holds text to one strict grammar:

    [-] DIGITS [ "." DIGITS ]      ASCII digits only; the minus only where the operation allows it;
                                   at most the currency's minor-unit decimals (CNY 2, JPY 0, KWD 3)

Decimal commas, thousands separators, `_`, exponents, `+`, spaces and non-ASCII digits are
refused with a message that shows what was read, never guessed at. Numbers that arrive as
numbers (`int`, or `Decimal` from JSON decoded with `json_loads`) are taken at their exact
value. No amount, and no balance, may exceed `MAX_MINOR` minor units (see docs/ledger.md, Limits).
"""

from __future__ import annotations

import decimal
import json
import re
import unicodedata
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

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
MAX_DECIMALS = max(MINOR_UNITS.values())

# The largest amount, and the largest balance, in minor units, for every currency: 15 digits
# (9,999,999,999,999.99 CNY; 999,999,999,999,999 JPY). It is below 2**53, so every amount is
# exact even in tools that read numbers as doubles (JavaScript, spreadsheets), and 9,223 times
# below the 64-bit storage limit, so no single value or balance comes near it (docs/ledger.md).
MAX_MINOR = 10**15 - 1

# A context that traps float mixing and inexact conversions we did not ask for.
_CTX = decimal.Context(prec=38, rounding=ROUND_HALF_EVEN, traps=[decimal.FloatOperation, InvalidOperation])
_GRAMMAR = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_SHOWN = 60  # characters of a refused value quoted in a message


def currency_code(value: str) -> str:
    """Normalize and check an ISO 4217 code (`cny` -> `CNY`)."""
    code = (value or "").strip().upper() if isinstance(value, str) else ""
    if code not in MINOR_UNITS:
        raise InvalidInput(
            f"unknown currency {shown(value)}: use an ISO 4217 code such as CNY, USD, EUR or JPY",
            field="currency", value=value)
    return code


def exponent(currency: str) -> int:
    """Digits after the decimal point for a currency."""
    return MINOR_UNITS[currency_code(currency)]


def shown(value: object) -> str:
    """What was read, for messages: `repr` of text (cut to a readable length), numbers as they are."""
    text = str(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(str(value))} characters)"


def accepted(decimals: int, *, negative: bool = False, what: str = "") -> str:
    """The grammar in words, for refusals: what a person should type instead."""
    sign = "an optional leading '-', then " if negative else ""
    example = "1234" if decimals == 0 else "1234." + "50".ljust(decimals, "0")
    tail = f"no decimals{what}" if decimals == 0 else f"at most one '.' and {decimals} decimals{what}"
    return f"accepted: {sign}ASCII digits 0-9 with {tail}, e.g. {example}"


def max_amount(currency: str) -> str:
    """The largest amount (and balance) of a currency, as text: `9999999999999.99`."""
    return fmt(MAX_MINOR, currency_code(currency))


def parse_amount(value: object, currency: str, *, field: str = "amount", allow_zero: bool = False,
                 allow_negative: bool = False) -> Decimal:
    """Read a money amount exactly; the one entry point for amounts from people, files, CRMs and the API.

    Text must match the grammar (module docstring) with at most the currency's decimals;
    `int` and `Decimal` are taken at their exact value (a `Decimal` may carry trailing zeros,
    as JSON numbers do, but no digit the currency cannot hold). Floats, booleans, NaN and
    infinities are refused, and so is anything above `MAX_MINOR` minor units. Returns the
    amount quantized to the currency's minor unit.
    """
    cur = currency_code(currency)
    exp = MINOR_UNITS[cur]
    if isinstance(value, str):
        amount = read_text(value, exp, cur, field=field, allow_zero=allow_zero, allow_negative=allow_negative)
    elif isinstance(value, float):
        raise InvalidInput(
            f"{field}: float {value!r} is not accepted for money: floats are not exact; pass the "
            f"amount as text ({accepted(exp, negative=allow_negative)})", field=field, value=value)
    elif isinstance(value, bool):
        raise InvalidInput(f"{field}: {value!r} is not an amount", field=field, value=value)
    elif isinstance(value, (int, Decimal)):
        amount = _read_number(Decimal(value), value, exp, cur, field, allow_zero, allow_negative)
    else:
        raise InvalidInput(f"{field}: expected a decimal amount, got {type(value).__name__}", field=field)
    return amount


def parse_minor(value: object, currency: str, *, field: str = "amount", allow_zero: bool = False,
                allow_negative: bool = False) -> int:
    """`to_minor(parse_amount(...))`: the amount in integer minor units, by the same grammar.

    Text that the grammar accepts as it stands is converted in integers (the bulk import reads
    a million of these); everything else, every refusal included, goes through `parse_amount`.
    """
    exp = MINOR_UNITS.get(currency)
    m = _GRAMMAR.fullmatch(value) if exp is not None and isinstance(value, str) else None
    if m is not None and exp is not None:
        sign, whole, frac = m.groups()
        if (allow_negative or not sign) and (frac is None or len(frac) <= exp) and len(whole) <= 16:
            minor: int = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if frac else 0)
            if 0 < minor <= MAX_MINOR or (minor == 0 and allow_zero):
                return -minor if sign else minor
    return to_minor(parse_amount(value, currency, field=field, allow_zero=allow_zero,
                                 allow_negative=allow_negative), currency)


def read_text(text: str, exp: int, cur: str = "", *, field: str = "amount", allow_zero: bool = False,
              allow_negative: bool = False) -> Decimal:
    """Text in the grammar with at most `exp` decimals, as a Decimal quantized to `exp` places.

    `cur` names the currency whose limit applies; without one (a threshold in a mapping file that
    serves every currency) only the grammar, the decimals and a 15-digit whole part are checked,
    and the value is returned as written.
    """
    m = _GRAMMAR.fullmatch(text)
    what = f" for {cur}" if cur else ""
    if m is None:
        raise InvalidInput(f"{field}: {shown(text)} is not an amount: {_why_not(text)}; "
                           f"{accepted(exp, negative=allow_negative, what=what)}", field=field, value=text)
    sign, whole, frac = m.groups()
    if sign and not allow_negative:
        raise _sign_refused(text, exp, field, allow_zero)
    if frac is not None and len(frac) > exp:
        raise InvalidInput(f"{field}: {shown(text)} has more than {exp} decimal places{what}; "
                           f"{accepted(exp, negative=allow_negative)}", field=field, value=text)
    if len(whole.lstrip("0")) > 15:  # cheaper than building a huge Decimal to refuse it
        raise _too_large(text, cur, field)
    if not cur:
        return _nonzero(Decimal(text), text, field, allow_zero)  # as written
    return _checked(Decimal(text).quantize(Decimal(1).scaleb(-exp)), text, cur, field, allow_zero)


def _read_number(amount: Decimal, value: object, exp: int, cur: str, field: str, allow_zero: bool,
                 allow_negative: bool) -> Decimal:
    if not amount.is_finite():
        raise InvalidInput(f"{field}: {shown(value)} is not a finite amount", field=field, value=value)
    if amount.adjusted() > 15:  # before quantizing: 1E+400 must not reach the decimal context
        raise _too_large(value, cur, field)
    quantized = amount.quantize(Decimal(1).scaleb(-exp), context=_CTX)
    if quantized != amount:
        raise InvalidInput(f"{field}: {shown(value)} has more than {exp} decimal places for {cur}",
                           field=field, value=value)
    if quantized < 0 and not allow_negative:
        raise _sign_refused(value, exp, field, allow_zero)
    return _checked(quantized, value, cur, field, allow_zero)


def read_decimal(value: object, *, field: str) -> Decimal:
    """A non-money decimal from a file or CRM (a percentage): text in the grammar, or an exact number."""
    if isinstance(value, str):
        return read_text(value, MAX_DECIMALS + 6, field=field, allow_zero=True, allow_negative=True)
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and Decimal(value).is_finite() \
            and Decimal(value).adjusted() <= 15:
        return Decimal(value)
    raise InvalidInput(f"{field}: {shown(value)} is not a decimal number; {accepted(2, negative=True)}",
                       field=field, value=value)


def _nonzero(amount: Decimal, value: object, field: str, allow_zero: bool) -> Decimal:
    if amount == 0 and not allow_zero:
        raise InvalidInput(f"{field}: {shown(value)} is refused: the amount must not be zero", field=field,
                           value=value)
    return amount


def _checked(amount: Decimal, value: object, cur: str, field: str, allow_zero: bool) -> Decimal:
    _nonzero(amount, value, field, allow_zero)
    if abs(amount).scaleb(MINOR_UNITS[cur]) > MAX_MINOR:
        raise _too_large(value, cur, field)
    return amount


def _sign_refused(value: object, exp: int, field: str, allow_zero: bool) -> InvalidInput:
    """One message for every negative amount where none is allowed, `-0` included."""
    rule = "zero or positive" if allow_zero else "positive"
    return InvalidInput(
        f"{field}: {shown(value)} is refused: the amount must be {rule}, written without a sign; "
        f"{accepted(exp)}", field=field, value=value)


def _too_large(value: object, cur: str, field: str) -> InvalidInput:
    limit = f"{max_amount(cur)} {cur}" if cur else "15 digits before the '.'"
    return InvalidInput(f"{field}: {shown(value)} is above the limit of {limit} per amount "
                        "(see 'Limits' in docs/ledger.md)", field=field, value=value)


def _why_not(text: str) -> str:
    """The first thing in `text` outside the grammar, in words."""
    if not text:
        return "it is empty"
    if not text.strip("-"):
        return "it has no digits"
    if text != text.strip():
        return "it has spaces around it"
    for ch in text:
        if not ch.isascii():
            name = unicodedata.name(ch, "")
            return f"it contains the non-ASCII character {ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})"
    if "," in text:
        return "',' is not accepted (no decimal commas, no thousands separators)"
    if "_" in text:
        return "'_' is not accepted (no digit separators)"
    if "e" in text.lower():
        return "exponents ('e') are not accepted"
    if text.startswith("+"):
        return "'+' is not accepted"
    if text.count(".") > 1:
        return "it has more than one '.'"
    if "." in text and not (text.split(".")[0].lstrip("-") and text.split(".")[1]):
        return "a '.' needs digits on both sides"
    odd = next((ch for ch in text.lstrip("-") if not (ch.isdigit() or ch == ".")), None)
    return f"{odd!r} is not accepted" if odd is not None else "only one leading '-' is accepted"


def within_limit(minor: int) -> bool:
    """True when an amount or balance of `minor` units is within `MAX_MINOR` either way."""
    return -MAX_MINOR <= minor <= MAX_MINOR


def json_loads(data: str | bytes) -> Any:
    """Decode JSON with every number exact: decimals become `Decimal`, never float; NaN/Infinity refused."""
    return json.loads(data, parse_float=Decimal, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not a number")


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
