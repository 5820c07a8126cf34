"""Money without a customer: which ledger account a payment goes to, and which accounts are orphaned.

A payment is never refused for its customer, and never silent. It is posted to the account of the
customer reference the CRM gave (`<crm>:<customers module>:<reference>`); when that reference is empty
or all zeros (`0`, `000000000000000000000000`), to a holding account of its own
(`<crm>:<customers module>:unassigned-payment-<payment id>`). An account under the connection's
customer prefix whose reference is not a live customer record of the CRM (deleted, never there, or
another kind of record) is orphaned; while it holds money the sync raises `orphaned` on it (flag and
task) and the report counts it (docs/mappings.md, "Payments without a customer").
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, func, select

from connector.ledger import store
from connector.sync import tables as t

HOLDING = "unassigned-payment-"


def no_customer(ref: str | None) -> bool:
    """A customer reference that names no record: empty, blank or all zeros."""
    text = (ref or "").strip()
    return not text or set(text) == {"0"}


def payment_account(prefix: str, customer_ref: str | None, payment_id: str) -> str:
    """The ledger customer key a payment is posted to (`prefix`: `<crm>:<customers module>:`)."""
    if no_customer(customer_ref):
        return f"{prefix}{HOLDING}{payment_id}"
    return f"{prefix}{customer_ref}"


def orphaned_keys(conn: Connection, connection: str, prefix: str) -> set[str]:
    """Ledger accounts under `prefix` whose reference is no live customer of `connection`'s CRM."""
    c, a = t.customers.c, store.accounts.c
    live = select(c.crm_id).where(c.connection == connection, c.deleted_at.is_(None),
                                  c.crm_id == func.substr(a.customer_key, len(prefix) + 1))
    return set(conn.execute(select(a.customer_key).where(
        a.customer_key.startswith(prefix, autoescape=True), ~exists(live)).distinct()).scalars())
