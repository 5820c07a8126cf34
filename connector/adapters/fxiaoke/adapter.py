"""FxiaokeAdapter: Fxiaoke JSON <-> domain records, write-back and follow-up tasks.

Entities are declared as data (`DEFAULT_SPECS`); code here exists only for Fxiaoke's real
differences: epoch-ms times, currency strings, `owner` lists, `life_status` instead of deletes.
A record that cannot be mapped is reported (`CrmAdapter.reject`) with its id, field and reason,
and the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector import money
from connector.adapters.base import (
    INCOMPLETE,
    ApiUsage,
    CallGate,
    CrmAdapter,
    EntitySpec,
    FieldInfo,
    FieldUpdate,
    RejectListener,
    TaskRef,
    TaskRequest,
    WaitListener,
    WriteResult,
    absent_fields,
)
from connector.adapters.errors import CrmRequestError, PermissionDenied, RetriableCrmError, ServerError
from connector.adapters.fxiaoke.auth import FxiaokeAuth, FxiaokeCredentials
from connector.adapters.fxiaoke.client import FxiaokeClient, from_epoch_ms, to_epoch_ms
from connector.adapters.fxiaoke.envelope import CHINA_TZ, CRM
from connector.adapters.http import ServerClock
from connector.domain import (
    BY_ENTITY,
    Deletion,
    Entity,
    Record,
)
from connector.errors import InvalidInput, RecordRejected, field_reason

log = logging.getLogger("connector.fxiaoke")

SYSTEM_READ = ("_id", "owner", "last_modified_time", "life_status", "is_deleted", "record_type")
READ_ONLY_TYPES = frozenset({"auto_number", "formula", "count", "quote"})
READ_ONLY_FIELDS = frozenset({
    "_id", "create_time", "created_by", "last_modified_time", "last_modified_by", "life_status",
    "lock_status", "is_deleted", "version", "object_describe_api_name", "owner", "record_type"
})
MONEY_ATTRS = frozenset({"prepay_amount", "credit_limit", "low_balance_threshold", "amount", "balance"})
SIGNED_MONEY = frozenset({"balance"})
ZERO_OK_MONEY = frozenset({"credit_limit", "low_balance_threshold", "balance"})
DATE_ATTRS = frozenset({"due_date", "valid_from", "valid_until", "paid_at"})
DATETIME_ATTRS = frozenset({"used_at"})

DEFAULT_SPECS: dict[Entity, EntitySpec] = {
    Entity.CUSTOMER: EntitySpec(entity=Entity.CUSTOMER, module="AccountObj",
                                fields={"name": "name"}, extra_fields=("account_no", "account_level")),
    Entity.CONTRACT: EntitySpec(entity=Entity.CONTRACT, module="prepay_contract__c", fields={
        "customer_id": "account_id__c", "name": "name", "prepay_amount": "prepay_amount__c",
        "due_date": "due_date__c", "valid_from": "valid_from__c", "valid_until": "valid_until__c",
        "refund_policy": "refund_policy__c", "refund_fee_pct": "refund_fee_pct__c",
        "credit_limit": "credit_limit__c", "low_balance_threshold": "low_balance_threshold__c",
        "status": "contract_status__c"}),
    Entity.PAYMENT: EntitySpec(entity=Entity.PAYMENT, module="PaymentObj", fields={
        "customer_id": "account_id", "contract_id": "contract_id__c", "amount": "payment_amount",
        "paid_at": "payment_time", "method": "payment_term"}, extra_fields=("name",)),
    Entity.PREPAYMENT: EntitySpec(entity=Entity.PREPAYMENT, module="CustomerAccountObj", fields={
        "customer_id": "customer_id", "balance": "prepay_balance"},
        extra_fields=("prepay_available_balance", "prepay_locked_balance")),
    Entity.CONSUMPTION: EntitySpec(entity=Entity.CONSUMPTION, module="PrepayDetailObj", fields={
        "customer_id": "customer_id", "amount": "amount", "used_at": "transaction_time"},
        extra_fields=("customer_account_id", "outcome_type")),
}
# Our field types -> the Fxiaoke field types (describe `type`) that can hold them.
DATA_TYPES: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "long_text", "email", "phone_number", "auto_number", "select_one"}),
    "money": frozenset({"currency", "number", "decimal"}),
    "decimal": frozenset({"currency", "number", "decimal", "percentile"}),
    "integer": frozenset({"number"}),
    "date": frozenset({"date", "date_time"}),
    "datetime": frozenset({"date_time"}),
    "picklist": frozenset({"select_one", "text", "record_type"}),
    "boolean": frozenset({"true_or_false"}),
    "lookup": frozenset({"object_reference"}),
}
# PrepayDetailObj holds both income (mirrors of payments) and outcome rows; only outcome is consumption.
INCOME_RECORD_TYPE = "income_record_type__c"


class FxiaokeTaskTarget(BaseModel):
    """Where follow-ups go: an object (ActiveRecordObj or a custom object) or a text message."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["object", "message"] = "object"
    api_name: str = "ActiveRecordObj"
    marker_field: str = "active_record_content"
    marker_embedded: bool = Field(default=True,
                                  description="marker sits inside a text field (found with LIKE)")
    subject_field: str | None = None
    description_field: str | None = None
    due_field: str | None = None
    related_field: str | None = "account_id"
    related_api_names_field: str | None = "related_api_names"
    status_field: str | None = None
    open_value: str | None = None
    closed_value: str | None = None
    extra_values: dict[str, Any] = Field(default_factory=dict)
    notify: bool = Field(default=False, description="also send the owner a text message")

    @classmethod
    def custom_object(cls, api_name: str = "followup_task__c", **overrides: Any) -> FxiaokeTaskTarget:
        """A custom task object with marker, status, related, due and description fields."""
        values: dict[str, Any] = dict(
            api_name=api_name, marker_field="marker__c", marker_embedded=False, subject_field="name",
            description_field="description__c", due_field="due_date__c", related_field="account_id__c",
            related_api_names_field=None, status_field="status__c", open_value="a1Xo2", closed_value="k9Pq7")
        values.update(overrides)
        return cls(**values)


def _china_date(value: Any) -> date:
    return from_epoch_ms(value).astimezone(CHINA_TZ).date()


class FxiaokeAdapter(CrmAdapter):
    """The `CrmAdapter` for Fxiaoke (纷享销客)."""

    kind = CRM

    def __init__(self, client: FxiaokeClient, *, currency: str = "CNY",
                 task_target: FxiaokeTaskTarget | None = None,
                 on_reject: RejectListener | None = None, max_rejects_kept: int = 1000) -> None:
        super().__init__(on_reject=on_reject)
        self.max_rejects_kept = max_rejects_kept
        self.client = client
        self.currency = money.currency_code(currency)
        self.task_target = task_target or FxiaokeTaskTarget()
        self._sent_markers: set[str] = set()
        self._owner_names: dict[str, str] | None = None  # the directory, read once per run (forget_metadata)

    @classmethod
    def from_env(cls, base_url: str, *, env_names: Mapping[str, str] | None = None,
                 open_user_id: str | None = None, mobile: str | None = None,
                 **options: Any) -> FxiaokeAdapter:
        """Build client and auth from credentials in the environment variables the config names."""
        credentials = FxiaokeCredentials.from_env(env_names)
        client_kw = {
            k: options.pop(k)
            for k in ("retry", "pace", "trigger_approval_flow", "trigger_work_flow", "session", "timeout")
            if k in options
        }
        session = client_kw.get("session")
        auth = FxiaokeAuth(base_url, credentials, session=session)
        client = FxiaokeClient(base_url, auth, open_user_id=open_user_id, mobile=mobile, **client_kw)
        return cls(client, **options)

    def __repr__(self) -> str:
        return f"FxiaokeAdapter(client={self.client!r})"

    # -- reading ---------------------------------------------------------------------------------

    def stream(self, spec: EntitySpec, since: datetime | None = None,
               overlap: timedelta = timedelta(seconds=0), *,
               deletions_since: datetime | None = None) -> Iterator[Record | Deletion]:
        """Records changed since `since - overlap` (keyset-paged); invalidated rows come out as Deletions.

        Fxiaoke has no separate deletion read, so `deletions_since` is not used.
        """
        since_ms = to_epoch_ms(since - overlap) if since is not None else None
        if spec.entity is Entity.CUSTOMER and self._owner_names is None:
            self._owner_names = self._read_directory()
        projection = list(dict.fromkeys([*SYSTEM_READ, *spec.crm_fields()]))
        for raw in self.client.iter_records(spec.module, projection=projection, since_ms=since_ms):
            crm_id = str(raw.get("_id"))
            if raw.get("life_status") == "invalid" or raw.get("is_deleted") is True:
                yield Deletion(crm=CRM, module=spec.module, entity=spec.entity, crm_id=crm_id,
                               deleted_at=from_epoch_ms(raw.get("last_modified_time") or 0))
                continue
            if spec.entity is Entity.CONSUMPTION and raw.get("record_type") == INCOME_RECORD_TYPE:
                continue
            try:
                yield self.to_domain(spec, raw)
            except RecordRejected as rejected:
                customer = crm_id if spec.entity is Entity.CUSTOMER else raw.get(
                    spec.fields.get("customer_id", ""))
                if isinstance(customer, list):
                    customer = customer[0] if customer else None
                rejected.customer_id = str(customer) if customer else None
                self.reject(rejected)

    def _read_directory(self) -> dict[str, str]:
        """Owner names for this run; without them (no permission, refused) reports fall back to ids."""
        try:
            return self.client.employee_names()
        except (CrmRequestError, PermissionDenied, ServerError) as exc:  # quota and credentials stop the run
            log.warning("fxiaoke: cannot read the employee directory, owners stay ids this run: %s", exc)
            return {}

    def forget_metadata(self) -> None:
        """Each run starts by reading the employee directory again (names change, people leave)."""
        self._owner_names = None

    def to_domain(self, spec: EntitySpec, raw: Mapping[str, Any]) -> Record:
        """Map one Fxiaoke record to its domain model, or raise RecordRejected."""
        crm_id = str(raw.get("_id"))
        absent = absent_fields(spec, raw)  # the client asks for nulls (`includeNull`), so absent is not empty
        if absent:
            raise RecordRejected(CRM, spec.module, crm_id, ", ".join(absent), INCOMPLETE, incomplete=True)
        currency_field = spec.fields.get("currency")
        currency = self.currency
        if currency_field and raw.get(currency_field):
            try:
                currency = money.currency_code(str(raw[currency_field]))
            except InvalidInput as exc:
                raise RecordRejected(CRM, spec.module, crm_id, currency_field, field_reason(exc)) from None
        values: dict[str, Any] = {}
        for attr, crm_field in spec.fields.items():
            if attr == "currency":
                continue
            value = raw.get(crm_field)
            if value is None or value == "":
                continue
            try:
                values[attr] = self._convert(attr, value, currency)
            except (ValueError, InvalidInput) as exc:
                reason = field_reason(exc) if isinstance(exc, InvalidInput) else str(exc)
                raise RecordRejected(CRM, spec.module, crm_id, crm_field, reason) from None
        owner = raw.get("owner")
        lmt = raw.get("last_modified_time")
        if lmt is None:
            raise RecordRejected(CRM, spec.module, crm_id, "last_modified_time", "missing")
        owner_id = str(owner[0]) if isinstance(owner, list) and owner else None
        common: dict[str, Any] = {
            "crm": CRM, "module": spec.module, "crm_id": crm_id, "modified_at": from_epoch_ms(lmt),
            "owner_id": owner_id, "owner_name": (self._owner_names or {}).get(owner_id or ""),
            "fields": {f: raw[f] for f in spec.extra_fields},
        }
        common["currency"] = currency
        if spec.entity is Entity.PAYMENT and "status" not in values:
            values["status"] = raw.get("life_status")
        model = BY_ENTITY[spec.entity].model
        try:
            return model(**common, **values)
        except Exception as exc:  # pydantic ValidationError: name the first failing field
            errors = exc.errors() if isinstance(exc, ValidationError) else []
            loc = errors[0]["loc"][0] if errors else "record"
            msg = errors[0]["msg"] if errors else str(exc)
            crm_field = spec.fields.get(str(loc), str(loc))
            raise RecordRejected(CRM, spec.module, crm_id, crm_field, msg) from None

    def _convert(self, attr: str, value: Any, currency: str) -> Any:
        if attr in MONEY_ATTRS:
            return money.parse_amount(value, currency, field=attr, allow_zero=attr in ZERO_OK_MONEY,
                                      allow_negative=attr in SIGNED_MONEY)
        if attr == "refund_fee_pct":
            return money.read_decimal(value, field=attr)
        if attr in DATE_ATTRS:
            return _china_date(value)
        if attr in DATETIME_ATTRS:
            return from_epoch_ms(value)
        if isinstance(value, list):
            return str(value[0]) if value else None
        return value if isinstance(value, str) else str(value)

    def describe(self, module: str) -> list[FieldInfo]:
        """Field metadata from /cgi/crm/v2/object/describe."""
        out: list[FieldInfo] = []
        for name, meta in sorted(self.client.fields(module).items()):
            kind = str(meta.get("type", ""))
            out.append(
                FieldInfo(
                    api_name=name, label=str(meta.get("label", "")), data_type=kind,
                    required=bool(meta.get("is_required")), read_only=kind in READ_ONLY_TYPES or
                    name in READ_ONLY_FIELDS or name.endswith(
                        ("__r", "__l")), custom=meta.get("define_type") == "custom" or name.endswith("__c"),
                    picklist_values=tuple(str(o.get("value")) for o in meta.get("options") or []),
                    max_length=meta.get("max_length"), decimal_places=meta.get("decimal_places")))
        return out

    def can_hold(self, field_type: str, info: FieldInfo) -> bool:
        """Whether a Fxiaoke field of type `info.data_type` can hold our `field_type` (`DATA_TYPES`)."""
        return info.data_type in DATA_TYPES[field_type]

    # -- writing ---------------------------------------------------------------------------------

    def write_fields(self, module: str, updates: Sequence[FieldUpdate]) -> list[WriteResult]:
        """One partial update per record (Fxiaoke has no batch update); one result each, in order."""
        results: list[WriteResult] = []
        for update in updates:
            try:
                self.client.update(module, update.crm_id, update.values)
                results.append(WriteResult(crm_id=update.crm_id, ok=True))
            except InvalidInput as exc:
                results.append(WriteResult(crm_id=update.crm_id, ok=False, code="invalid_value",
                                           message=exc.message, field=exc.details.get("field")))
            except (CrmRequestError, PermissionDenied) as exc:
                results.append(WriteResult(crm_id=update.crm_id, ok=False, code=exc.code, message=str(exc)))
            except RetriableCrmError as exc:
                results.append(WriteResult(crm_id=update.crm_id, ok=False, code=exc.code, message=str(exc),
                                           retriable=True))
        return results

    # -- tasks -----------------------------------------------------------------------------------

    def find_tasks(self, markers: Sequence[str]) -> list[TaskRef]:
        """Follow-ups carrying these markers, open or closed."""
        target = self.task_target
        if target.kind == "message":
            return [
                TaskRef(task_id=f"message:{m}", marker=m, open=True) for m in markers
                if m in self._sent_markers
            ]
        unique = list(dict.fromkeys(markers))
        projection = [f for f in (target.marker_field, target.related_field, target.status_field) if f]
        projection.append("life_status")
        # An embedded marker is found with one LIKE per marker; a marker field with IN, 50 at a time.
        queries: list[tuple[list[str], str, str | None]] = (
            [([f"[{m}]"], "LIKE", m) for m in unique] if target.marker_embedded
            else [(unique[i:i + 50], "IN", None) for i in range(0, len(unique), 50)])
        found: list[TaskRef] = []
        for values, operator, marker in queries:
            flt = [{"field_name": target.marker_field, "field_values": values, "operator": operator}]
            for raw in self.client.iter_records(target.api_name, filters=flt, projection=projection):
                found.append(
                    self._task_ref(raw, marker if marker is not None else str(raw.get(target.marker_field))))
        return found

    def _task_ref(self, raw: Mapping[str, Any], marker: str) -> TaskRef:
        target = self.task_target
        open_ = raw.get("life_status") != "invalid"
        if target.status_field:
            open_ = open_ and raw.get(target.status_field) == target.open_value
        related = raw.get(target.related_field) if target.related_field else None
        return TaskRef(task_id=str(raw["_id"]), marker=marker, open=open_,
                       related_id=str(related) if related else None)

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[TaskRef]:
        """Create follow-ups for record owners; a marker that already has an open task is not created
        again."""
        open_by_marker = {ref.marker: ref for ref in self.find_tasks([t.marker for t in tasks]) if ref.open}
        owners: dict[tuple[str, str], str | None] = {}  # one GET per related record, not per task
        out: list[TaskRef] = []
        for task in tasks:
            existing = open_by_marker.get(task.marker)
            if existing is not None:
                out.append(existing)
                continue
            owner = task.owner_id
            if not owner:
                key = (task.related_module, task.related_id)
                if key not in owners:
                    owners[key] = self._record_owner(*key)
                owner = owners[key]
            ref = self._create_task(task, owner)
            open_by_marker[task.marker] = ref
            out.append(ref)
        return out

    def _record_owner(self, module: str, record_id: str) -> str | None:
        owner = self.client.get_record(module, record_id).get("owner")
        return str(owner[0]) if isinstance(owner, list) and owner else None

    def _create_task(self, task: TaskRequest, owner: str | None) -> TaskRef:
        target = self.task_target
        text = f"[{task.marker}] {task.subject}" + (f"\n{task.description}" if task.description else "")
        if target.kind == "message":
            if owner is None:
                raise CrmRequestError(f"task {task.marker}: the related record has no owner to message",
                                      crm=CRM)
            self.client.send_text([owner], text)
            self._sent_markers.add(task.marker)
            return TaskRef(task_id=f"message:{task.marker}", marker=task.marker, open=True,
                           related_id=task.related_id)
        data: dict[str, Any] = dict(target.extra_values)
        data[target.marker_field] = text if target.marker_embedded else task.marker
        if target.subject_field:
            data[target.subject_field] = task.subject
        if target.description_field and task.description:
            data[target.description_field] = task.description
        if target.due_field and task.due_date:
            data[target.due_field] = task.due_date
        if target.related_field:
            data[target.related_field] = task.related_id
        if target.related_api_names_field:
            data[target.related_api_names_field] = [task.related_module]
        if target.status_field and target.open_value:
            data[target.status_field] = target.open_value
        if owner:
            data["owner"] = [owner]
        task_id = self.client.create(target.api_name, data)
        if target.notify and owner:
            self.client.send_text([owner], text)
        return TaskRef(task_id=task_id, marker=task.marker, open=True, related_id=task.related_id)

    def close_task(self, task_id: str) -> None:
        """Close a follow-up: set the closed status, or invalidate it when the target has no status."""
        target = self.task_target
        if target.kind == "message":
            self._sent_markers.discard(task_id.removeprefix("message:"))
            return
        if target.status_field and target.closed_value:
            self.client.update(target.api_name, task_id, {target.status_field: target.closed_value})
        else:
            self.client.invalid(target.api_name, task_id)

    # -- housekeeping ------------------------------------------------------------------------------

    def set_gate(self, gate: CallGate | None) -> None:
        """Ask `gate` before every call (see CrmAdapter.set_gate)."""
        self.client.gate = gate

    def set_wait_listener(self, listener: WaitListener | None) -> None:
        """Tell `listener` before every wait (see CrmAdapter.set_wait_listener)."""
        self.client.on_wait = listener
    def server_clock(self) -> ServerClock:
        """Fxiaoke's clock, from the Date header of every answer."""
        return self.client.server_clock

    def usage(self) -> ApiUsage:
        """Calls made so far (business calls by path, plus token calls)."""
        return self.client.usage()

    def close(self) -> None:
        """Nothing pooled beyond the requests session, which the caller owns."""
