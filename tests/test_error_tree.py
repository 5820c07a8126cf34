"""One error tree: every error prepaid-sync raises on purpose is a ConnectorError whose class says whether a
later try may succeed; one "resume later at T" error covers the local API budget and the CRM's quota."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from datetime import datetime, timezone

import connector
from connector.adapters.errors import CrmError, QuotaExhausted, RetriableCrmError
from connector.errors import ConnectorError, ResumeLater, is_retriable
from connector.ops.alerts.channels import DeliveryError

# Lifecycle signals of a run (not errors: nobody is told to fix anything) and private control flow.
SIGNALS = {"StopRequested", "MassChangeHeld"}


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(connector.__path__, "connector."):
        if ".sandbox" in info.name or info.name.endswith("__main__") or ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name \
                    and not name.startswith("_"):
                found[f"{info.name}.{name}"] = obj
    return list(found.values())


def test_every_public_error_is_under_the_root_and_says_whether_to_retry() -> None:
    classes = _error_classes()
    assert len(classes) > 30
    outside = sorted(c.__name__ for c in classes
                     if not issubclass(c, ConnectorError) and c.__name__ not in SIGNALS)
    assert outside == []
    for cls in classes:
        if issubclass(cls, ConnectorError):
            assert isinstance(cls.retriable, bool)
            assert cls.retriable == issubclass(cls, (RetriableCrmError, DeliveryError)), cls


def test_the_budget_and_the_crms_quota_are_one_resume_later_error() -> None:
    at = datetime(2026, 11, 28, tzinfo=timezone.utc)
    crm = QuotaExhausted("daily credits used up", crm="zoho", status=429, code="TOO_MANY_REQUESTS",
                         resume_at=at)
    local = QuotaExhausted("daily API budget of 9 credits for 'zoho' would be passed", resume_at=at,
                           summary="")
    for error in (crm, local):
        assert isinstance(error, ResumeLater) and isinstance(error, CrmError) and not is_retriable(error)
        assert error.run_status == "budget" and error.resume_at == at
    assert crm.run_reason() == ("the CRM's daily API allowance is used up: zoho TOO_MANY_REQUESTS: daily "
                                "credits used up (HTTP 429); the next run resumes after "
                                "2026-11-28 00:00:00 UTC")
    assert local.run_reason() == ("daily API budget of 9 credits for 'zoho' would be passed; the next run "
                                  "resumes after 2026-11-28 00:00:00 UTC")
    assert not is_retriable(ValueError("not ours"))
