"""`mappings check --online`: every mapped field exists, types fit, owned fields are writable, picklists match."""

from __future__ import annotations

from typing import Any

from connector.adapters.base import CrmAdapter, FieldInfo
from connector.adapters.errors import CrmRequestError, PermissionDenied
from connector.errors import MappingMismatch
from connector.mapping.loader import suggest
from connector.mapping.models import FieldMap, Mapping

# Our field types -> CRM data types that can hold them (Zoho and Fxiaoke names together).
COMPATIBLE: dict[str, set[str]] = {
    "text": {"text", "textarea", "long_text", "email", "phone", "website", "phone_number", "auto_number",
             "picklist", "select_one", "bigint"},
    "money": {"currency", "double", "decimal", "number"},
    "decimal": {"currency", "double", "decimal", "number", "percent", "percentile", "integer"},
    "integer": {"integer", "bigint", "number"},
    "date": {"date", "date_time", "datetime"},
    "datetime": {"datetime", "date_time"},
    "picklist": {"picklist", "select_one", "text", "record_type"},
    "boolean": {"boolean", "true_or_false"},
    "lookup": {"lookup", "object_reference", "ownerlookup"},
}
ZOHO_TYPES = {"money": "currency", "decimal": "double", "integer": "integer", "text": "text", "date": "date",
              "datetime": "datetime", "picklist": "picklist", "boolean": "boolean"}


def _fields(m: Mapping) -> list[tuple[str, str, FieldMap]]:
    out = []
    for section in ("customers", "contracts", "payments", "consumption", "prepayment"):
        emap = getattr(m, section)
        if emap is None:
            continue
        for name, fm in {**emap.fields, **emap.extra}.items():
            out.append((f"{section}.fields.{name}", emap.module, fm))
    out += [(f"write_back.{name}", m.customers.module, fm) for name, fm in m.write_back.items()]
    return out


def _module_paths(m: Mapping) -> dict[str, str]:
    """Where each mapped module is named in the mapping (the first section that names it)."""
    out: dict[str, str] = {}
    for section in ("customers", "contracts", "payments", "consumption", "prepayment"):
        emap = getattr(m, section)
        if emap is not None:
            out.setdefault(emap.module, f"{section}.module")
    return out


def modules(m: Mapping) -> list[str]:
    """The CRM modules a mapping reads or writes, each once (one metadata call each)."""
    return list(_module_paths(m))


def check_online(adapter: CrmAdapter, m: Mapping, *, create_fields: bool = False) -> list[dict[str, str]]:
    """Problems found against the CRM's field metadata (empty when the mapping fits).

    A module the CRM cannot describe (it does not exist, or the API user may not read it) is one
    problem, not one per field. A failure that no module escapes (credentials refused, CRM unreachable,
    allowance used up) is raised as it is, once: it says nothing about the mapping.
    """
    problems: list[dict[str, str]] = []
    meta: dict[str, dict[str, FieldInfo] | None] = {}
    missing_owned: list[tuple[str, str, FieldMap]] = []
    where = _module_paths(m)
    for path, module, fm in _fields(m):
        if module not in meta:
            try:
                meta[module] = {f.api_name: f for f in adapter.describe(module)}
            except (CrmRequestError, PermissionDenied) as exc:
                problems.append({"path": where[module], "reason": f"module {module!r} cannot be described: {exc}"})
                meta[module] = None
        fields = meta[module]
        if fields is None:
            continue
        info = fields.get(fm.crm)
        if info is None:
            if fm.owner == "connector" and create_fields:
                missing_owned.append((path, module, fm))
                continue
            problems.append({"path": f"{path}.crm", "reason": f"{module} has no field {fm.crm!r}"
                             f"{suggest(fm.crm, set(fields))}"})
            continue
        if info.data_type not in COMPATIBLE[fm.type]:
            problems.append({"path": f"{path}.type", "reason": f"{module}.{fm.crm} is {info.data_type}; "
                             f"cannot hold {fm.type}"})
        if fm.owner == "connector" and info.read_only:
            problems.append({"path": path, "reason": f"{module}.{fm.crm} is read-only; prepaid-sync must write it"})
        if fm.values and info.picklist_values:
            crm_side = set(fm.values.values())
            for value in sorted(crm_side - set(info.picklist_values)):
                problems.append({"path": f"{path}.values", "reason": f"{value!r} is not a value of {module}."
                                 f"{fm.crm}{suggest(value, set(info.picklist_values))}"})
    if missing_owned:
        problems += _create(adapter, missing_owned)
    return problems


def preflight(adapter: CrmAdapter, m: Mapping) -> None:
    """The start of every run: fresh field metadata (one call per module, through the run's budget gate),
    checked like `mappings check --online`; MappingMismatch when a mapped field is missing or cannot hold
    its value."""
    adapter.forget_metadata()
    problems = check_online(adapter, m)
    if problems:
        raise MappingMismatch(problems, m.crm)


def _create(adapter: CrmAdapter, wanted: list[tuple[str, str, FieldMap]]) -> list[dict[str, str]]:
    client: Any = getattr(adapter, "client", None)
    if adapter.kind != "zoho" or client is None or not hasattr(client, "create_fields"):
        return [{"path": p, "reason": f"{fm.crm} is missing and {adapter.kind} fields cannot be created by API; "
                 "create it in the CRM's setup"} for p, _m, fm in wanted]
    problems = []
    for path, module, fm in wanted:
        body: dict[str, Any] = {"field_label": fm.crm.replace("_", " "), "data_type": ZOHO_TYPES.get(fm.type, "text")}
        if fm.type == "picklist":
            body["pick_list_values"] = [{"display_value": v, "actual_value": v} for v in fm.values.values()]
        [outcome] = client.create_fields(module, [body])
        if not outcome.ok:
            problems.append({"path": path, "reason": f"could not create {fm.crm}: {outcome.code} {outcome.message}"})
    return problems
