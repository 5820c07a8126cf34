"""The one mapping from the error tree to problem types: every ledger rule has its own stable type, a class
not listed gets its nearest base's, and a problem body never carries a secret."""

from __future__ import annotations

import json

from connector.api import problems
from connector.compliance import PrepaymentsStopped
from connector.errors import (ConfigError, ConnectorError, CurrencyMismatch, IdempotencyConflict,
                              InsufficientBalance, LedgerRuleError, RecordRejected, RefundRefused,
                              ReversalRefused)


def test_each_ledger_rule_has_its_own_type_and_status() -> None:
    want = {InsufficientBalance: (422, "insufficient-balance"),
            IdempotencyConflict: (409, "idempotency-conflict"),
            CurrencyMismatch: (422, "currency-mismatch"), RefundRefused: (422, "refund-refused"),
            ReversalRefused: (422, "reversal-refused"), PrepaymentsStopped: (422, "prepayments-stopped")}
    for cls, (status, slug) in want.items():
        kind = problems.problem_for(cls("x"))
        assert (kind.status, kind.uri) == (status, problems.BASE + slug)
    slugs = [p.slug for p in problems.PROBLEMS.values()] + list(problems.API_PROBLEMS)
    assert len(slugs) == len(set(slugs))


def test_an_unlisted_class_gets_its_nearest_base() -> None:
    class NewRule(LedgerRuleError):
        pass

    assert problems.problem_for(NewRule("x")).slug == "ledger-rule"
    assert problems.problem_for(ConfigError("x")).slug == "invalid-input"
    assert problems.problem_for(RecordRejected("zoho", "Accounts", "1", "f", "r")).slug == "invalid-input"
    assert problems.problem_for(ConnectorError("x")).status == 500


def test_problem_bodies_pass_the_one_sanitizer() -> None:
    key = "ps_live_0123456789ab_" + "S3cr3t-" * 6
    response = problems.from_error(InsufficientBalance(f"refused for Authorization: Bearer {key}"), "/p")
    doc = json.loads(bytes(response.body))
    assert response.media_type == problems.MEDIA_TYPE and doc["instance"] == "/p"
    assert "S3cr3t" not in json.dumps(doc)
