"""The prepayment ledger: lots, immutable entries, permanent idempotency, verifiable balances."""

from connector.ledger.service import BalanceView, Ledger, PostingResult, Statement

__all__ = ["BalanceView", "Ledger", "PostingResult", "Statement"]
