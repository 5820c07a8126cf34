"""The tenant's employee directory as the /cgi/user/* calls answer it (flat bodies, no `data` wrapper).

`/cgi/user/list` and `/cgi/user/simpleList` list a department's members (999999 = the whole company);
`/cgi/user/get/batchByUpdTime` pages (1-based page numbers) through employees changed in a time window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.adapters.fxiaoke.sandbox.seed import SALES_DEPARTMENT, WHOLE_COMPANY, Employee
from connector.adapters.fxiaoke.sandbox.store import SandboxError, param_error

DEPARTMENTS = {WHOLE_COMPANY: "全公司", SALES_DEPARTMENT: "销售部"}
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 1000


def user(emp: Employee, show_departments: bool = False) -> dict[str, Any]:
    """One employee as /cgi/user/get and /cgi/user/list describe them."""
    out: dict[str, Any] = {"openUserId": emp.open_user_id, "account": emp.user_id, "name": emp.name,
                           "nickName": emp.name, "isStop": emp.stopped, "mobile": emp.mobile,
                           "departmentIds": [emp.department], "employeeNumber": emp.user_id,
                           "createTime": emp.updated_ms}
    if show_departments:
        out.update(mainDepartmentId=emp.department, attachingDepartmentIds=[])
    return out


def _department(body: Mapping[str, Any]) -> int:
    value = body.get("departmentId")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SandboxError(11009, "the parameter departmentId is missing or illegal", "缺少参数或参数不合法")
    if value not in DEPARTMENTS:
        raise SandboxError(30007, "部门不存在", "部门不存在")
    return value


def department_members(staff: Sequence[Employee], body: Mapping[str, Any], *, simple: bool) -> dict[str, Any]:
    """`userList` of a department; `fetchChild` adds its sub-departments (every department is under
    999999)."""
    dept = _department(body)
    whole = dept == WHOLE_COMPANY and body.get("fetchChild") is True
    members = [e for e in staff if whole or e.department == dept]
    if simple:
        return {
            "userList": [{"openUserId": e.open_user_id, "name": e.name, "nickName": e.name} for e in members]
        }
    show = bool(body.get("showDepartmentIdsDetail"))
    return {"userList": [user(e, show) for e in members]}


def _int(body: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise param_error(f"{name} 必须是整数")
    return value


def changed_since(staff: Sequence[Employee], body: Mapping[str, Any]) -> dict[str, Any]:
    """Employees whose entry changed in [startTime, endTime] (ms, both optional), oldest change first."""
    start, end = _int(body, "startTime", None), _int(body, "endTime", None)
    size, number = _int(body, "pageSize", PAGE_SIZE_DEFAULT), _int(body, "pageNumber", 1)
    assert size is not None and number is not None
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise param_error(f"pageSize 取值范围 1-{PAGE_SIZE_MAX}")
    if number < 1:
        raise param_error("pageNumber 从 1 开始")
    matched = sorted((e for e in staff if (start is None or e.updated_ms >= start)
                      and (end is None or e.updated_ms <= end)), key=lambda e: (e.updated_ms, e.user_id))
    page = matched[(number - 1) * size:number * size]
    show = bool(body.get("showDepartmentIdsDetail"))
    return {"pageNumber": number, "pageCount": -(-len(matched) // size), "totalCount": len(matched),
            "lastChangedTime": page[-1].updated_ms if page else (start or 0),
            "employees": [{**user(e, show), "updateTime": e.updated_ms} for e in page]}
