"""prepaid-sync: a prepayment ledger kept in sync with Zoho CRM and Fxiaoke."""

__version__ = "0.1.0"
__all__ = ["__version__"]
