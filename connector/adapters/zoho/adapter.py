"""ZohoAdapter: Zoho JSON <-> domain records, field writes with per-record results, idempotent tasks.

Contracts live in **Deals** (standard in every org, upsertable, linked to Accounts) with custom
prepayment fields; payments live in a custom module **Prepaid_Payments**. Both are only defaults:
pass your own `EntitySpec`s to map other modules or field names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector import money
from connector.adapters.base import (
    INCOMPLETE,
    ApiUsage,
    CallGate,
    CrmAdapter,
    EntitySpec,
    FieldInfo,
    FieldUpdate,
    NewField,
    RejectListener,
    TaskRef,
    TaskRequest,
    WaitListener,
    WriteResult,
)
from connector.adapters.errors import CrmRequestError, RetriableCrmError
from connector.adapters.http import ServerClock
from connector.adapters.zoho.client import ZohoClient
from connector.adapters.zoho.watch import ZohoWatch
from connector.adapters.zoho.wire import format_time, parse_time
from connector.domain import (
    BY_ENTITY,
    Deletion,
    Entity,
    Record,
)
from connector.errors import InvalidInput, RecordRejected, field_reason

log = logging.getLogger("connector.zoho.adapter")

# Our field types -> the Zoho data types (`/settings/fields` `data_type`) that can hold them.
DATA_TYPES: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "textarea", "email", "phone", "website", "picklist", "bigint"}),
    "money": frozenset({"currency", "double", "decimal"}),
    "decimal": frozenset({"currency", "double", "decimal", "percent", "integer"}),
    "integer": frozenset({"integer", "bigint"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime"}),
    "picklist": frozenset({"picklist", "text"}),
    "boolean": frozenset({"boolean"}),
    "lookup": frozenset({"lookup", "ownerlookup"}),
}
# Our field types -> the data type a field created for them gets.
CREATED_TYPES = {"money": "currency", "decimal": "double", "integer": "integer", "text": "text",
                 "date": "date", "datetime": "datetime", "picklist": "picklist", "boolean": "boolean"}
MONEY = {"prepay_amount", "credit_limit", "low_balance_threshold", "amount", "balance"}
DECIMALS = {"refund_fee_pct"}
DATES = {"due_date", "valid_from", "valid_until"}
WHENS = {"paid_at", "used_at"}
LOOKUPS = {"customer_id", "contract_id"}
TASK_MARKER_FIELD = "Prepaid_Sync_Marker"
CLOSED_STATUSES = ("Completed",)
_COQL_IN = 50
_TASK_ROUNDS = 3
DELETION_CHECK_INTERVAL = timedelta(minutes=60)


def default_specs() -> dict[Entity, EntitySpec]:
    """Built-in mapping: Accounts (customers), Deals (contracts), Prepaid_Payments (payments)."""
    return {
        Entity.CUSTOMER: EntitySpec(
            entity=Entity.CUSTOMER, module="Accounts",
            fields={"name": "Account_Name", "currency": "Currency"},
            extra_fields=("Ledger_Customer_ID", "Prepaid_Balance", "Prepaid_Tier", "Prepaid_Flags")),
        Entity.CONTRACT: EntitySpec(
            entity=Entity.CONTRACT, module="Deals", fields={
                "customer_id": "Account_Name", "name": "Deal_Name", "currency": "Currency",
                "prepay_amount": "Prepay_Amount", "due_date": "Closing_Date", "valid_from": "Valid_From",
                "valid_until": "Valid_Until", "refund_policy": "Refund_Policy",
                "refund_fee_pct": "Refund_Fee_Pct", "credit_limit": "Credit_Limit",
                "low_balance_threshold": "Low_Balance_Threshold", "status": "Stage"
            }),
        Entity.PAYMENT: EntitySpec(
            entity=Entity.PAYMENT, module="Prepaid_Payments", fields={
                "customer_id": "Account", "contract_id": "Deal", "amount": "Amount", "currency": "Currency",
                "paid_at": "Payment_Date", "status": "Payment_Status", "method": "Payment_Method"
            }),
    }


# Keys `to_domain` always fills itself; the model's other required attributes must come from the mapping.
_BASE_KEYS = frozenset({"crm", "module", "crm_id", "modified_at", "owner_id", "owner_name", "fields",
                        "entity"})


@dataclass(frozen=True)
class _Plan:
    """One spec's mapping as `to_domain` walks it: the model, fields to check and the required attributes."""

    model: type[Record]
    crm_fields: tuple[str, ...]
    crm_field_set: frozenset[str]
    currency_field: str | None
    mapped: tuple[tuple[str, str], ...]  # (attribute, CRM field), the currency apart
    money: tuple[str, ...]
    extra_fields: tuple[str, ...]
    required: tuple[tuple[str, bool], ...]  # (attribute, a lookup that may be None)

    @classmethod
    def of(cls, spec: EntitySpec) -> _Plan:
        """Work the plan out from `spec` and its entity's model."""
        model = BY_ENTITY[spec.entity].model
        required = tuple(
            (attr, attr in LOOKUPS and info.annotation is not None and "None" in str(info.annotation))
            for attr, info in model.model_fields.items() if attr not in _BASE_KEYS and info.is_required())
        crm_fields = tuple(spec.crm_fields())
        return cls(model=model, crm_fields=crm_fields, crm_field_set=frozenset(crm_fields),
                   currency_field=spec.fields.get("currency"),
                   mapped=tuple((a, f) for a, f in spec.fields.items() if a != "currency"),
                   money=tuple(MONEY & set(model.model_fields) & set(spec.fields)),
                   extra_fields=tuple(spec.extra_fields), required=required)


class _Unsendable(InvalidInput):
    """A value `write_fields` refuses to send, by the field's metadata; it never leaves the adapter."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.field = field
        self.reason = reason


class ZohoAdapter(CrmAdapter):
    """The sync engine's view of one Zoho CRM org."""

    kind = "zoho"

    def __init__(self, client: ZohoClient, *, specs: dict[Entity, EntitySpec] | None = None,
                 default_currency: str | None = None, task_marker_field: str = TASK_MARKER_FIELD,
                 closed_statuses: Sequence[str] = CLOSED_STATUSES,
                 on_reject: RejectListener | None = None,
                 deletion_check_interval: timedelta = DELETION_CHECK_INTERVAL) -> None:
        super().__init__(on_reject=on_reject)
        self.client = client
        self.deletion_check_interval = deletion_check_interval
        self.specs = specs or default_specs()
        self.default_currency = default_currency
        self.task_marker_field = task_marker_field
        self.closed_statuses = tuple(closed_statuses)
        self._fields: dict[str, list[FieldInfo]] = {}
        self._owners: dict[tuple[str, str], str | None] = {}
        self._plans: dict[int, tuple[EntitySpec, _Plan]] = {}

    # -- reading --------------------------------------------------------------------------

    def stream(self, spec: EntitySpec, since: datetime | None = None,
               overlap: timedelta = timedelta(seconds=0), *,
               deletions_since: datetime | None = None) -> Iterator[Record | Deletion]:
        """Records changed since `since - overlap` (oldest first); then, when `deletions_since` is given,
        deletions since `deletions_since - overlap` (`/deleted`, 2 credits a page: the engine asks at most
        once per `deletion_check_interval`)."""
        fields = [*spec.crm_fields(), "Owner", "Modified_Time"]
        # The overlap only widens an incremental read; on a full read it would only enlarge the de-dup window.
        for row in self.client.iter_records(spec.module, fields, since=since,
                                            overlap=overlap if since is not None else timedelta(0)):
            try:
                yield self.to_domain(spec, row)
            except RecordRejected as bad:
                bad.customer_id = self._customer_of(spec, row)
                self.reject(bad)
        if deletions_since is None:
            return
        for item in self.client.iter_deleted(spec.module,
                                             since=deletions_since - max(overlap, timedelta(seconds=1))):
            yield Deletion(crm=self.kind, module=spec.module, entity=spec.entity, crm_id=str(item["id"]),
                           deleted_at=parse_time(str(item["deleted_time"])))

    @staticmethod
    def _customer_of(spec: EntitySpec, row: dict[str, Any]) -> str | None:
        if spec.entity is Entity.CUSTOMER:
            return str(row["id"]) if row.get("id") else None
        lookup = row.get(spec.fields.get("customer_id", ""))
        return str(lookup["id"]) if isinstance(lookup, dict) and lookup.get("id") else None

    def to_domain(self, spec: EntitySpec, row: dict[str, Any]) -> Record:
        """Map one Zoho record to its domain model, or raise `RecordRejected`."""
        plan = self._plan(spec)
        key = (spec.module, str(row.get("id")))
        if not row.keys() >= plan.crm_field_set:
            absent = [name for name in plan.crm_fields if name not in row]
            raise self._rejected(key, ", ".join(absent), INCOMPLETE, incomplete=True)
        values: dict[str, Any] = {}
        currency_field = plan.currency_field
        currency = row.get(currency_field) if currency_field else None
        if currency:
            try:
                currency = money.currency_code(str(currency))
            except InvalidInput:
                raise self._rejected(key, str(currency_field), f"unknown currency {currency!r}") from None
        currency = currency or self.default_currency
        for attr, crm_field in plan.mapped:
            raw = row.get(crm_field)
            if raw is None or raw == "":
                continue
            values[attr] = self._convert(key, attr, crm_field, raw, currency)
        if currency:
            values["currency"] = currency
        elif any(attr in values for attr in plan.money):
            attr = next(a for a in plan.money if a in values)
            raise self._rejected(key, spec.fields[attr], "amount without a currency (set "
                                 "default_currency or fill the record's currency)")
        if values.get("valid_from") and values.get(
                "valid_until") and values["valid_until"] < values["valid_from"]:
            raise self._rejected(key, spec.fields["valid_until"], f"valid until {values['valid_until']} is "
                                 f"before valid from {values['valid_from']}")
        owner = row.get("Owner")
        base: dict[str, Any] = {
            "crm": self.kind, "module": spec.module, "crm_id": str(row["id"]),
            "modified_at": parse_time(str(row["Modified_Time"])),
            "owner_id": str(owner["id"]) if isinstance(owner, dict) and owner.get("id") else None,
            "owner_name": str(owner["name"]) if isinstance(owner, dict) and owner.get("name") else None,
            "fields": {name: row[name] for name in plan.extra_fields}}
        for attr, nullable in plan.required:
            if attr not in values:
                if nullable:
                    values[attr] = None
                    continue
                raise self._rejected(key, spec.fields.get(attr, attr), "required value is missing")
        try:
            return plan.model(**base, **values)
        except ValueError as exc:
            raise self._rejected(key, "?", f"does not fit {plan.model.__name__}: {exc}") from None

    def _plan(self, spec: EntitySpec) -> _Plan:
        """What `to_domain` needs to know about `spec`, worked out once per spec instead of per record."""
        held = self._plans.get(id(spec))
        if held is not None and held[0] is spec:
            return held[1]
        if len(self._plans) >= 64:
            self._plans.clear()
        plan = _Plan.of(spec)
        self._plans[id(spec)] = (spec, plan)  # holding `spec` keeps its id from being reused
        return plan

    def _rejected(self, key: tuple[str, str], field: str, reason: str, *,
                  incomplete: bool = False) -> RecordRejected:
        module, crm_id = key
        return RecordRejected(self.kind, module, crm_id, field, reason, incomplete=incomplete)

    def _convert(self, key: tuple[str, str], attr: str, crm_field: str, raw: Any,
                 currency: str | None) -> Any:
        try:
            if attr in MONEY:
                if isinstance(raw, float) or not currency:
                    return raw  # reported by the currency check / refused below
                return money.parse_amount(raw, currency, field=crm_field, allow_zero=True)
            if attr in DECIMALS:
                return money.read_decimal(raw, field=crm_field)
            if attr in DATES:
                return date.fromisoformat(str(raw))
            if attr in WHENS:
                text = str(raw)
                return parse_time(text) if "T" in text else date.fromisoformat(text)
            if attr in LOOKUPS:
                if not isinstance(raw, dict) or not raw.get("id"):
                    raise InvalidInput(f"expected a lookup {{id}}, got {raw!r}")
                return str(raw["id"])
            return raw if isinstance(raw, str) else str(raw)
        except InvalidInput as exc:
            raise self._rejected(key, crm_field, field_reason(exc)) from None
        except (ValueError, TypeError) as exc:
            raise self._rejected(key, crm_field, f"cannot read {raw!r}: {exc}") from None

    def forget_metadata(self) -> None:
        """Read field metadata again on the next `describe` (the engine calls it at the start of each run)."""
        self._fields.clear()

    def describe(self, module: str) -> list[FieldInfo]:
        """Field metadata of `module` (cached until `forget_metadata`)."""
        if module not in self._fields:
            infos = []
            for meta in self.client.fields(module):
                picks = tuple(p["actual_value"] for p in meta.get("pick_list_values") or []
                              if p.get("actual_value") != "-None-")
                infos.append(
                    FieldInfo(api_name=meta["api_name"], label=meta.get("field_label") or "",
                              data_type=meta["data_type"], required=bool(meta.get("system_mandatory")),
                              read_only=bool(meta.get("field_read_only") or meta.get("read_only")),
                              custom=bool(meta.get("custom_field")), picklist_values=picks,
                              max_length=meta.get("length"), decimal_places=meta.get("decimal_place")))
            self._fields[module] = infos
        return self._fields[module]

    def can_hold(self, field_type: str, info: FieldInfo) -> bool:
        """Whether a Zoho field of `info.data_type` can hold our `field_type` (`DATA_TYPES`)."""
        return info.data_type in DATA_TYPES[field_type]

    def create_field(self, module: str, field: NewField) -> WriteResult:
        """Create a custom field (`POST /settings/fields`); Zoho names it after its label."""
        body: dict[str, Any] = {"field_label": field.api_name.replace("_", " "),
                                "data_type": CREATED_TYPES.get(field.field_type, "text")}
        if field.field_type == "picklist":
            body["pick_list_values"] = [{"display_value": v, "actual_value": v}
                                        for v in field.picklist_values]
        [outcome] = self.client.create_fields(module, [body])
        return WriteResult(crm_id=outcome.record_id, ok=outcome.ok, code=outcome.code,
                           message=outcome.message)

    # -- writing --------------------------------------------------------------------------

    def write_fields(self, module: str, updates: Sequence[FieldUpdate]) -> list[WriteResult]:
        """Partial updates, checked against field metadata first (Zoho silently ignores unknown keys)."""
        known = {f.api_name: f for f in self.describe(module)}
        results: list[WriteResult | None] = [None] * len(updates)
        payload: list[dict[str, Any]] = []
        positions: list[int] = []
        for i, upd in enumerate(updates):
            try:
                payload.append(
                    {"id": upd.crm_id, **{k: self._outgoing(known, k, v)
                                          for k, v in upd.values.items()}})
                positions.append(i)
            except _Unsendable as bad:
                results[i] = WriteResult(crm_id=upd.crm_id, ok=False, code="REFUSED_LOCALLY",
                                         message=bad.reason, field=bad.field)
        for outcome in self.client.update(module, payload) if payload else []:
            i = positions[outcome.index]
            results[i] = WriteResult(crm_id=outcome.record_id or updates[i].crm_id, ok=outcome.ok,
                                     code=outcome.code, message=outcome.message, field=outcome.field,
                                     retriable=outcome.code in ("RECORD_LOCKED",))
        return [r for r in results if r is not None]

    def _outgoing(self, known: dict[str, FieldInfo], name: str, value: Any) -> Any:
        info = known.get(name)
        if info is None:
            raise _Unsendable(name, "no such field in Zoho (it would be silently ignored)")
        if info.read_only:
            raise _Unsendable(name, "field is read-only in Zoho")
        if isinstance(value, float):
            raise _Unsendable(name, "floats are not sent; use Decimal")
        if isinstance(value, Decimal) and info.decimal_places is not None and \
                value != value.quantize(Decimal(1).scaleb(-info.decimal_places)):
            raise _Unsendable(name, f"{value} has more than {info.decimal_places} decimal places")
        if info.picklist_values and value is not None and value not in info.picklist_values:
            raise _Unsendable(name, f"{value!r} is not one of {', '.join(info.picklist_values)}")
        if isinstance(value, datetime):
            return format_time(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    # -- tasks ----------------------------------------------------------------------------

    def find_tasks(self, markers: Sequence[str]) -> list[TaskRef]:
        """Tasks whose marker field holds one of `markers`, open or closed (via COQL, read-your-writes)."""
        field = self.task_marker_field
        out: list[TaskRef] = []
        unique = list(dict.fromkeys(markers))
        for start in range(0, len(unique), _COQL_IN):
            chunk = unique[start:start + _COQL_IN]
            quoted = ", ".join("'" + m.replace("\\", "\\\\").replace("'", "\\'") + "'" for m in chunk)
            offset = 0
            while True:
                rows = self.client.coql(
                    f"select id, Status, What_Id, {field} from Tasks where {field} in ({quoted}) "
                    f"order by id asc limit {offset}, 200")
                for row in rows:
                    what = row.get("What_Id")
                    out.append(TaskRef(task_id=str(row["id"]), marker=str(row.get(field)),
                                       open=row.get("Status") not in self.closed_statuses,
                                       related_id=str(what["id"]) if isinstance(what, dict) else None))
                if len(rows) < 200:
                    break
                offset += 200
        return out

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[TaskRef]:
        """Create each task unless an open one with its marker exists; safe to retry after a crash."""
        wanted = {t.marker: t for t in tasks}
        done: dict[str, TaskRef] = {}
        for round_no in range(_TASK_ROUNDS):
            for ref in self.find_tasks(list(wanted)):
                if ref.open and ref.marker in wanted:
                    done.setdefault(ref.marker, ref)
            pending = [t for m, t in wanted.items() if m not in done]
            if not pending:
                break
            try:
                outcomes = self.client.insert("Tasks", [self._task_payload(t) for t in pending])
            except RetriableCrmError as exc:
                # The insert may or may not have happened: look the markers up again before retrying.
                log.warning("task insert interrupted (%s); re-checking markers (round %d)", exc, round_no + 1)
                if round_no == _TASK_ROUNDS - 1:
                    raise
                continue
            for task, outcome in zip(pending, outcomes):
                if outcome.ok and outcome.record_id:
                    done[task.marker] = TaskRef(task_id=outcome.record_id, marker=task.marker, open=True,
                                                related_id=task.related_id)
                else:
                    raise CrmRequestError(f"task {task.marker!r} refused: {outcome.code} {outcome.message} "
                                          f"(field {outcome.field})", crm="zoho", code=outcome.code)
            break
        return [done[t.marker] for t in tasks if t.marker in done]

    def _task_payload(self, task: TaskRequest) -> dict[str, Any]:
        owner = task.owner_id or self._owner_of(task.related_module, task.related_id)
        body: dict[str, Any] = {"Subject": task.subject, "Status": "Not Started",
                                "What_Id": {"id": task.related_id}, "$se_module": task.related_module,
                                self.task_marker_field: task.marker}
        if task.description:
            body["Description"] = task.description
        if task.due_date:
            body["Due_Date"] = task.due_date.isoformat()
        if task.priority:
            body["Priority"] = task.priority
        if owner:
            body["Owner"] = {"id": owner}
        return body

    def _owner_of(self, module: str, record_id: str) -> str | None:
        key = (module, record_id)
        if key not in self._owners:
            rec = self.client.get_record(module, record_id, ["Owner"])
            owner = (rec or {}).get("Owner")
            self._owners[key] = str(owner["id"]) if isinstance(owner, dict) and owner.get("id") else None
        return self._owners[key]

    def close_task(self, task_id: str) -> None:
        """Mark a task Completed."""
        [outcome] = self.client.update("Tasks", [{"id": task_id, "Status": "Completed"}])
        if not outcome.ok:
            raise CrmRequestError(f"could not close task {task_id}: {outcome.code} {outcome.message}",
                                  crm="zoho", code=outcome.code)

    def set_gate(self, gate: CallGate | None) -> None:
        """Ask `gate` before every call (see CrmAdapter.set_gate)."""
        self.client.gate = gate

    def set_wait_listener(self, listener: WaitListener | None) -> None:
        """Tell `listener` before every wait (see CrmAdapter.set_wait_listener)."""
        self.client.on_wait = listener
    def push_source(self, written: Mapping[str, Sequence[str]] | None = None) -> ZohoWatch:
        """A Notifications API channel over every mapped module; edits of a module the connector writes to
        notify only when a field the sync reads changed."""
        modules: dict[str, list[str]] = {}
        for spec in self.specs.values():
            own = set((written or {}).get(spec.module, ()))
            modules[spec.module] = [f for f in spec.crm_fields() if f not in own] if own else []
        return ZohoWatch(self.client, modules)

    def server_clock(self) -> ServerClock:
        """Zoho's clock, from the Date header of every answer."""
        return self.client.server_clock

    def usage(self) -> ApiUsage:
        """Calls and credits this adapter's client has spent."""
        return self.client.usage()

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.session.close()
