"""The error tree: each branch says what the caller can do about it.

Every error carries a human message that names the record, field or customer and the
reason. The CLI maps branches to exit codes: 2 invalid input, 3 refused by a ledger rule.
Every class says whether trying the same thing again may succeed (`retriable`); only the
transient CRM and delivery failures do. `ResumeLater` stops a whole run until a stated time.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any, ClassVar


class ConnectorError(Exception):
    """Root of every error prepaid-sync raises on purpose."""

    exit_code = 1
    retriable: ClassVar[bool] = False  # True: the same call, tried again later, may succeed

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form for `--json` output and run records."""
        return {
            "error": type(self).__name__, "message": self.message,
            **{k: str(v)
               for k, v in self.details.items()}
        }


def is_retriable(exc: BaseException) -> bool:
    """True when `exc` is one of our errors whose class says a later try may succeed."""
    return isinstance(exc, ConnectorError) and exc.retriable


class ResumeLater(ConnectorError):
    """No later call of this run can succeed: the run stops at once and may resume at `resume_at`.

    Raised for the connection's own daily API budget and the CRM's daily allowance alike (see
    `connector.adapters.errors.QuotaExhausted`), and for token-refresh limits and refused credentials.
    Per-record and per-batch handlers let it through; the sync runner catches it once and ends the run
    as `run_status` with `run_reason()`. `resume_at` None means it does not clear by itself (a person
    has to act, e.g. new credentials). `zone`, when given, is the zone the resume time is told in.
    """

    run_status: ClassVar[str] = "interrupted"
    summary: str = "the CRM cannot be called again for now"

    def __init__(self, message: str, *, resume_at: datetime | None = None, summary: str | None = None,
                 zone: tzinfo | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.resume_at = resume_at
        self.zone = zone
        if summary is not None:
            self.summary = summary

    def run_reason(self) -> str:
        """The stop as one line: what happened (led by `summary`, if any), and when the run can go on."""
        if self.resume_at is None:
            when = "it does not clear by itself: fix it, then run again"
        elif self.zone is not None:
            when = f"the next run resumes after {self.resume_at.astimezone(self.zone):%Y-%m-%d %H:%M %Z}"
        else:
            utc = self.resume_at.astimezone(timezone.utc)
            when = f"the next run resumes after {utc:%Y-%m-%d %H:%M:%S} UTC"
        return f"{self.summary}: {self}; {when}" if self.summary else f"{self}; {when}"


def field_reason(exc: ConnectorError) -> str:
    """`exc`'s message without the leading `FIELD: ` its raiser put there, for a caller that names the field
    itself (so that an error list shows `payment_amount: must be positive`, not `payment_amount: amount:
    ...`)."""
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    prefix = f"{field}: "
    return exc.message[len(prefix):] if field and exc.message.startswith(prefix) else exc.message


class InvalidInput(ConnectorError):
    """The input itself is wrong (bad amount, unknown currency, malformed row); fix it and retry."""

    exit_code = 2


class ConfigError(InvalidInput):
    """A configuration or mapping file is wrong; the message names file, path and reason."""


class MappingMismatch(ConfigError):
    """The mapping names CRM fields that do not exist or cannot hold their values; a run stops before it
    reads or writes anything. `problems` are the `mappings check --online` lines ({path, reason})."""

    def __init__(self, problems: list[dict[str, str]], crm: str) -> None:
        lines = "; ".join(f"{p['path']}: {p['reason']}" for p in problems)
        super().__init__(
            f"the mapping does not fit the {crm} fields, so the run stopped before reading or writing "
            f"anything: {lines}; correct the mapping file (`prepaid-sync mappings check --online` "
            "lists the same problems)", problems=problems)
        self.problems = problems


class RecordRejected(InvalidInput):
    """A CRM record that cannot become a domain record; names the record, the field and the reason.

    The adapter skips it and tells the engine (`CrmAdapter.on_reject`); the run goes on. `incomplete`: a
    mapped field is absent from the record (not empty); `customer_id`: the CRM id of the customer the
    record belongs to, when the record says."""

    def __init__(self, crm: str, module: str, crm_id: str, field: str, reason: str, *,
                 incomplete: bool = False, customer_id: str | None = None) -> None:
        record = f"{crm}:{module}:{crm_id}"
        super().__init__(f"{record}: field {field}: {reason}", record=record, field=field, reason=reason)
        self.crm = crm
        self.module = module
        self.crm_id = crm_id
        self.field = field
        self.reason = reason
        self.incomplete = incomplete
        self.customer_id = customer_id

    @property
    def record(self) -> str:
        """The record's key, as `Record.key` spells it (`crm:module:id`)."""
        return f"{self.crm}:{self.module}:{self.crm_id}"


class LedgerRuleError(ConnectorError):
    """A valid request the ledger refuses by rule; nothing was written."""

    exit_code = 3


class InsufficientBalance(LedgerRuleError):
    """Spending would take the account below minus its credit limit."""


class IdempotencyConflict(LedgerRuleError):
    """An idempotency key was used before with a different payload."""


class CurrencyMismatch(LedgerRuleError):
    """Currencies would mix (a posting against an account or lot of another currency)."""


class RefundRefused(LedgerRuleError):
    """The refund exceeds what is refundable, or the refund policy forbids it."""


class ReversalRefused(LedgerRuleError):
    """The entry cannot be reversed (already reversed, a reversal itself, or its lot is spent)."""


class NotFound(ConnectorError):
    """A named account, entry or record does not exist."""

    exit_code = 2


class DatabaseUnavailable(ConnectorError):
    """The database a command would use is missing, unreachable or refuses us; the message names it and the
    fix."""

    exit_code = 2


class LedgerCorrupt(ConnectorError):
    """`verify` found stored state that its entries do not explain."""

    exit_code = 1


class StorageFull(ConnectorError):
    """The disk holding the database is full (or the database reached its size limit); nothing more is
    written."""

    exit_code = 1
