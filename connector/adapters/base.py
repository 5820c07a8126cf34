"""The vendor-neutral interface between the sync engine and a CRM.

The engine calls only what is declared here. Records cross as `connector.domain` models,
never vendor JSON; HTTP, auth and paging stay in each vendor's client, and the mapping from
vendor fields to our models stays in each vendor's adapter.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.adapters.http import ServerClock
from connector.adapters.push import PushSource
from connector.domain import Deletion, Entity, Record
from connector.errors import RecordRejected

log = logging.getLogger("connector.adapters")

CallGate = Callable[[str, int], None]
# Told `(seconds, why)` before the client waits (a rate limit, a retry's back-off, call pacing).
WaitListener = Callable[[float, str], None]
"""Asked before each HTTP call with (call type, credits it costs); raises to refuse the call."""
RejectListener = Callable[[RecordRejected], None]
"""Told of each record an adapter skips because it cannot be mapped."""


class EntitySpec(BaseModel):
    """Where one entity lives in the CRM and which CRM field holds each domain attribute.

    `fields` maps a domain attribute (e.g. `prepay_amount`) to a CRM field API name
    (e.g. `Prepay_Amount__c`); `extra_fields` are pulled into `Record.fields` as they are.
    """

    model_config = ConfigDict(frozen=True)

    entity: Entity
    module: str
    fields: dict[str, str] = Field(default_factory=dict)
    extra_fields: tuple[str, ...] = ()

    def crm_fields(self) -> list[str]:
        """Every CRM field to request, without duplicates, in a stable order."""
        seen: dict[str, None] = {}
        for name in [*self.fields.values(), *self.extra_fields]:
            seen.setdefault(name, None)
        return list(seen)


def absent_fields(spec: EntitySpec, record: Any) -> list[str]:
    """The mapped CRM fields a record came without: absent from its JSON, as opposed to present and empty.

    A CRM leaves out a field the API user may not see, or one the module does not have; reading it as
    empty would clear flags, close tasks and rewrite fields that depend on it, so adapters refuse such a
    record (`INCOMPLETE`) instead."""
    return [name for name in spec.crm_fields() if name not in record]


INCOMPLETE = (
    "absent from the record the CRM sent (an empty field comes as null): the API user may not see it or "
    "the module has no such field; correct the mapping or the user's field permissions (`prepaid-sync "
    "mappings check --online`), then re-read the record with `prepaid-sync sync run --full`; until then "
    "its customer is left as it is")


class FieldInfo(BaseModel):
    """Metadata of one CRM field, used to validate mappings before any write."""

    model_config = ConfigDict(frozen=True)

    api_name: str
    label: str = ""
    data_type: str
    required: bool = False
    read_only: bool = False
    custom: bool = False
    picklist_values: tuple[str, ...] = ()
    max_length: int | None = None
    decimal_places: int | None = None


class FieldUpdate(BaseModel):
    """Connector-owned field values to write to one CRM record (CRM field API name -> value)."""

    model_config = ConfigDict(frozen=True)

    crm_id: str
    values: dict[str, Any]


class WriteResult(BaseModel):
    """The CRM's verdict on one record of a batch write."""

    model_config = ConfigDict(frozen=True)

    crm_id: str | None
    ok: bool
    code: str = ""
    message: str = ""
    field: str | None = None
    retriable: bool = False


class TaskRequest(BaseModel):
    """A follow-up for a person, tied to a CRM record; `marker` makes it idempotent."""

    model_config = ConfigDict(frozen=True)

    marker: str = Field(description="stable id of the open flag, e.g. 'ps:overdue:zoho:Accounts:123'")
    subject: str
    description: str = ""
    due_date: date | None = None
    owner_id: str | None = None
    related_module: str
    related_id: str
    priority: str | None = None


class TaskRef(BaseModel):
    """A task as found in the CRM."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    marker: str
    open: bool
    related_id: str | None = None


class NewField(BaseModel):
    """A connector-owned field the mapping names and the CRM lacks, as `mappings check --create-fields` asks
    for it: its API name, our field type (`money`, `picklist`, ...) and, for a picklist, the CRM's values."""

    model_config = ConfigDict(frozen=True)

    api_name: str
    field_type: str
    picklist_values: tuple[str, ...] = ()


class ApiUsage(BaseModel):
    """What this adapter has spent so far, as the CRM counts it."""

    calls: int = 0
    credits: int = 0
    by_type: dict[str, int] = Field(default_factory=dict)
    remaining: int | None = Field(default=None, description="as last reported by the CRM, if it reports it")
    resets_at: datetime | None = None


class CrmAdapter(abc.ABC):
    """What the sync engine needs from a CRM. Zoho and Fxiaoke both implement it."""

    kind: str
    deletion_check_interval: timedelta | None = None
    """How often the engine asks for deletions when the CRM reports them through a separate read
    (Zoho's `/deleted`); None when deletions come with the records (Fxiaoke's invalidated rows)."""
    max_rejects_kept = 1000

    def __init__(self, *, on_reject: RejectListener | None = None) -> None:
        self.on_reject = on_reject  # the engine's hook for the records `stream` skips (`reject`)
        self.rejected: list[RecordRejected] = []

    def reject(self, rejected: RecordRejected) -> None:
        """Skip a record that cannot be mapped: log it, keep it in `rejected` (the first `max_rejects_kept`)
        and tell `on_reject`. `stream` calls this and reads on."""
        log.warning("skipping %s", rejected)
        if len(self.rejected) < self.max_rejects_kept:
            self.rejected.append(rejected)
        if self.on_reject is not None:
            self.on_reject(rejected)

    @abc.abstractmethod
    def stream(self, spec: EntitySpec, since: datetime | None = None,
               overlap: timedelta = timedelta(seconds=0), *,
               deletions_since: datetime | None = None) -> Iterator[Record | Deletion]:
        """Yield records of `spec` changed at or after `since - overlap`, then deletions.

        Lazy: one page at a time. Within one call no (crm_id, modified_at) is yielded twice.
        `since=None` means a full read. An adapter with a separate deletion read
        (`deletion_check_interval` set) reads it only when `deletions_since` is given, from
        `deletions_since - overlap`; the others yield deletions among the records and ignore it.
        A record that cannot be mapped is not yielded: it goes to `reject`.
        """

    @abc.abstractmethod
    def describe(self, module: str) -> list[FieldInfo]:
        """Field metadata of a module/object."""

    @abc.abstractmethod
    def write_fields(self, module: str, updates: Sequence[FieldUpdate]) -> list[WriteResult]:
        """Partial updates in batches the CRM allows, with one result per update, in order."""

    @abc.abstractmethod
    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[TaskRef]:
        """Create tasks, skipping any whose marker already has an open task (returned as found)."""

    @abc.abstractmethod
    def find_tasks(self, markers: Sequence[str]) -> list[TaskRef]:
        """Tasks carrying any of these markers, open or closed."""

    @abc.abstractmethod
    def close_task(self, task_id: str) -> None:
        """Mark a task completed (the flag behind it has cleared)."""

    @abc.abstractmethod
    def usage(self) -> ApiUsage:
        """API calls and credits spent by this adapter."""

    def can_hold(self, field_type: str, info: FieldInfo) -> bool:
        """Whether the CRM field `info` can hold values of our field type `field_type` (`money`, `picklist`,
        ...), by this CRM's own data types. An adapter without such a table takes every field as fitting."""
        return True

    def create_field(self, module: str, field: NewField) -> WriteResult | None:
        """Create a missing connector-owned field in `module`; None when this CRM's fields cannot be created
        through its API (the default)."""
        return None

    def forget_metadata(self) -> None:  # noqa: B027 - optional hook
        """Drop field metadata cached by `describe`, so the next call reads it again (each run starts so)."""

    def set_gate(self, gate: CallGate | None) -> None:
        """Have `gate(call_type, credits)` asked before every HTTP call this adapter makes; it raises to
        refuse the call (the daily API budget). None removes it."""
        raise NotImplementedError(f"{type(self).__name__} cannot meter its calls")

    def set_wait_listener(self, listener: WaitListener | None) -> None:  # noqa: B027 - optional hook
        """Have `listener(seconds, why)` told before every wait of this adapter's client (None removes it)."""
    def push_source(self, written: Mapping[str, Sequence[str]] | None = None) -> PushSource | None:
        """A change-notification channel at this CRM over the modules the engine reads, or None when the CRM
        has no record-change push (then polling is all there is). `written` names, per module, the fields
        the connector itself writes: their edits need not notify."""
        return None

    def server_clock(self) -> ServerClock | None:
        """The CRM's clock as its answers state it (HTTP `Date`), or None when this adapter cannot tell.

        The engine's cursors follow it, never the machine's clock."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release HTTP sessions and the like."""
