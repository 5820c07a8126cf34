"""The texts a pull records for a person: why a record was not posted or set, and what to correct in the CRM.

Reasons go into the per-record error rows (and the run report); memos go onto ledger entries.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from connector.timeutil import zone as time_zone

CONTRACT_WITHOUT_CUSTOMER = "contract has no customer"
CONTRACT_WITHOUT_CURRENCY = "no currency on the contract, its customer or the mapping"
RECORD_WITHOUT_CURRENCY = "no currency on the record, its customer or the mapping"
EDITED = "edited in the CRM"
DELETED = "deleted in the CRM"


def without_customer(kind: str) -> str:
    """A payment or consumption that names no customer."""
    return f"{kind} has no customer"


def local_time(at: datetime, zone: str | None) -> str:
    """A time as the CRM user sees it: the date alone at midnight, else date, time and zone."""
    local = at.astimezone(time_zone(zone, default="UTC"))
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{local:%Y-%m-%d}"
    return f"{local:%Y-%m-%d %H:%M} {zone or 'UTC'}"


def consumption_before_any_deposit(at: str, first_deposit: str) -> str:
    """A consumption dated before every deposit the customer has (times as `local_time` gives them)."""
    return (f"consumption dated {at} is before any deposit available then "
            f"(first deposit {first_deposit}); correct the date in the CRM")


def consumption_before_its_funding(amount: object, available: object, currency: str, at: str,
                                   next_deposit: str) -> str:
    """A consumption larger than what was available at its date, with a deposit dated after it."""
    return (f"consumption of {amount} {currency} dated {at}: only "
            f"{available} {currency} was available then and the next deposit is dated "
            f"{next_deposit}; correct the date in the CRM if it was used later, or record the payment that "
            "funded it")


def edited_amount(old: object, new: Decimal, currency: str | None) -> str:
    """Why a partly spent deposit's difference is posted: its payment's amount was edited."""
    return f"{EDITED} from {old} to {new} {currency}"


def difference_memo(record: str, why: str) -> str:
    """The memo of a difference posted for a partly spent deposit."""
    return f"{record} {why}; its deposit was partly spent, so the difference is posted"


def spent_shortfall(why: str, short: Decimal, currency: str, took: Decimal) -> str:
    """A fall (or deletion) of a partly spent payment: the part already spent can't be taken back."""
    return (f"{why}: {short} {currency} of the difference was already spent and can't be taken "
            f"back from the balance (took back {took}); collect it from the customer or restore the payment")
