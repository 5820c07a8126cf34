"""Compliance rules as data: refunds under the rules in force, custody, threshold warnings, stop switch."""

from connector.compliance.guard import DepositGuard, PrepaymentsStopped
from connector.compliance.rules import ComplianceRules, load_rules

__all__ = ["ComplianceRules", "DepositGuard", "PrepaymentsStopped", "load_rules"]
