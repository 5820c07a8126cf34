"""The "stop accepting prepayments" switch: a deposit guard the ledger calls before planning a deposit."""

from __future__ import annotations

from pathlib import Path

from connector.compliance.rules import ComplianceRules, load_rules
from connector.errors import LedgerRuleError
from connector.ledger.planners import Request
from connector.money import fmt


class PrepaymentsStopped(LedgerRuleError):
    """Deposits are refused: the compliance switch `accept_prepayments` is off."""


class DepositGuard:
    """Refuses every new deposit while `accept_prepayments` is false (replays of old deposits still answer).

    Without `rules`, the configuration is read on the first deposit, so other ledger commands
    never depend on the compliance settings.
    """

    def __init__(self, rules: ComplianceRules | None = None, *, config: str | Path | None = None) -> None:
        self._rules = rules
        self.config = config

    @property
    def rules(self) -> ComplianceRules:
        """The rules in force (loaded once)."""
        if self._rules is None:
            self._rules = load_rules(self.config)
        return self._rules

    def __call__(self, req: Request) -> None:
        """Raise `PrepaymentsStopped` when prepayments are stopped."""
        rules = self.rules
        if rules.accept_prepayments:
            return
        why = f": {rules.stop_reason}" if rules.stop_reason else ""
        raise PrepaymentsStopped(
            f"deposit of {fmt(req.amount, req.currency)} {req.currency} for customer {req.customer} refused: "
            f"prepayments are stopped (accept_prepayments = false in {rules.source}){why}",
            customer=req.customer, field="accept_prepayments")
