"""The prepayment ledger: lots, immutable entries, permanent idempotency, verifiable balances."""

from connector.ledger.queries import BalanceView, LedgerQueries, Statement
from connector.ledger.service import BatchOutcome, Ledger, PostingResult
from connector.ledger.terms import TermsBook

__all__ = ["BalanceView", "BatchOutcome", "Ledger", "LedgerQueries", "PostingResult", "Statement",
           "TermsBook"]
