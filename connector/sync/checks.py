"""`mappings check --online`: every mapped field exists, types fit, owned fields are writable, picklists
match."""

from __future__ import annotations

from connector.adapters.base import CrmAdapter, FieldInfo, NewField
from connector.adapters.errors import CrmRequestError, PermissionDenied
from connector.errors import MappingMismatch
from connector.mapping.loader import suggest
from connector.mapping.models import FieldMap, Mapping


def _fields(m: Mapping) -> list[tuple[str, str, FieldMap]]:
    out = []
    for stream, emap in m.sections():
        for name, fm in {**emap.fields, **emap.extra}.items():
            out.append((f"{stream.name}.fields.{name}", emap.module, fm))
    out += [(f"write_back.{name}", m.customers.module, fm) for name, fm in m.write_back.items()]
    return out


def _module_paths(m: Mapping) -> dict[str, str]:
    """Where each mapped module is named in the mapping (the first section that names it)."""
    out: dict[str, str] = {}
    for stream, emap in m.sections():
        out.setdefault(emap.module, f"{stream.name}.module")
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
                problems.append(
                    {"path": where[module], "reason": f"module {module!r} cannot be described: {exc}"})
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
        if not adapter.can_hold(fm.type, info):
            problems.append({"path": f"{path}.type", "reason": f"{module}.{fm.crm} is {info.data_type}; "
                             f"cannot hold {fm.type}"})
        if fm.owner == "connector" and info.read_only:
            problems.append(
                {"path": path, "reason": f"{module}.{fm.crm} is read-only; prepaid-sync must write it"})
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
    problems = []
    for path, module, fm in wanted:
        outcome = adapter.create_field(module, NewField(api_name=fm.crm, field_type=fm.type,
                                                        picklist_values=tuple(fm.values.values())))
        if outcome is None:
            problems.append({"path": path, "reason": f"{fm.crm} is missing and {adapter.kind} fields cannot "
                             "be created by API; create it in the CRM's setup"})
        elif not outcome.ok:
            problems.append({"path": path,
                             "reason": f"could not create {fm.crm}: {outcome.code} {outcome.message}"})
    return problems
