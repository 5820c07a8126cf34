"""The sandbox follows the reference checklist: envelopes, tokens, limits, system fields, writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from connector.adapters.fxiaoke.sandbox import SandboxApp
from connector.adapters.fxiaoke.sandbox.store import SandboxError


def post(app: SandboxApp, path: str, body: dict[str, Any],
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = app.handle(path, headers or {}, json.dumps(body).encode())
    assert reply.status == 200 and reply.body is not None
    return reply.body


def token(app: SandboxApp) -> dict[str, Any]:
    c = app.credentials
    return post(app, "/cgi/corpAccessToken/get/V2",
                {"appId": c.app_id, "appSecret": c.app_secret, "permanentCode": c.permanent_code})


_TOKENS: dict[int, dict[str, Any]] = {}


def call(app: SandboxApp, path: str, data: dict[str, Any], **top: Any) -> dict[str, Any]:
    t = _TOKENS.get(id(app))
    if t is None or not app.tokens.valid(t["corpAccessToken"], "body"):
        t = _TOKENS[id(app)] = token(app)
    return post(app, path, {"corpAccessToken": t["corpAccessToken"], "corpId": t["corpId"],
                            "currentOpenUserId": app.credentials.open_user_id, **top, "data": data})


def query(app: SandboxApp, api: str, **info: Any) -> dict[str, Any]:
    path = "/cgi/crm/custom/v2/data/query" if api.endswith("__c") else "/cgi/crm/v2/data/query"
    return call(app, path,
                {"dataObjectApiName": api, "search_query_info": {"limit": 100, "offset": 0, **info}})


def test_token_rules_same_token_then_new_after_6600s(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app()
    first = token(app)
    assert first["errorCode"] == 0 and first["expiresIn"] == 7200 and first["corpId"].startswith("FSCID_")
    app.clock.advance(6000)
    again = token(app)
    assert again["corpAccessToken"] == first["corpAccessToken"] and again["expiresIn"] <= 1200
    app.clock.advance(700)
    renewed = token(app)
    assert renewed["corpAccessToken"] != first["corpAccessToken"]
    app.clock.advance(600)  # the first token is now past 7200 s
    body = post(
        app, "/cgi/crm/v2/data/query", {
            "corpAccessToken": first["corpAccessToken"], "corpId": first["corpId"],
            "currentOpenUserId": app.credentials.open_user_id, "data": {}
        })
    assert body["errorCode"] == 20016 and body["traceId"]


def test_token_endpoint_errors_and_rate_limit(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app()
    c = app.credentials
    bad = post(app, "/cgi/corpAccessToken/get/V2",
               {"appId": c.app_id, "appSecret": "x", "permanentCode": "y"})
    assert bad["errorCode"] == 10006
    for _ in range(9):
        assert token(app)["errorCode"] == 0
    assert token(app)["errorCode"] == 14001  # 11th call within a minute
    app.clock.advance(61)
    assert token(app)["errorCode"] == 0


def test_header_style_token_and_credentials_checks(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=3)
    c = app.credentials
    grant = post(app, "/oauth2.0/token", {"appId": c.app_id, "appSecret": c.app_secret,
                                          "permanentCode": c.permanent_code, "grantType": "app_secret"})
    assert grant["errorCode"] == 0 and grant["ea"] == c.ea
    headers = {"authorization": f"Bearer {grant['accessToken']}", "x-fs-ea": c.ea, "x-fs-userid": "1000"}
    body = post(
        app, "/cgi/crm/v2/data/query",
        {"data": {"dataObjectApiName": "AccountObj", "search_query_info": {"limit": 10, "offset": 0}}},
        headers)
    assert body["errorCode"] == 0 and len(body["data"]["dataList"]) == 3
    assert post(app, "/cgi/crm/v2/data/query", {"data": {}})["errorCode"] == 20017
    assert post(app, "/cgi/crm/v2/data/query",
                {"corpAccessToken": "NOPE", "corpId": c.corp_id})["errorCode"] == 20016


def test_query_limits_and_system_fields(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=30)
    assert query(app, "AccountObj", offset=10_100)["errorCode"] == 10013
    assert query(app, "AccountObj", limit=101)["errorCode"] == 32000
    assert query(app, "AccountObj", limit=20, offset=30)["errorCode"] == 32000
    assert query(app, "prepay_contract__c")["errorCode"] == 0
    wrong_path = call(app, "/cgi/crm/v2/data/query", {"dataObjectApiName": "prepay_contract__c",
                                                      "search_query_info": {"limit": 10, "offset": 0}})
    assert wrong_path["errorCode"] == 10006
    body = query(app, "PaymentObj")
    assert set(body) >= {"traceId", "errorCode", "errorMessage", "errorDescription", "data"}
    record = body["data"]["dataList"][0]
    assert len(record["_id"]) == 24 and isinstance(record["owner"], list)
    assert isinstance(record["last_modified_time"], int) and record["last_modified_time"] > 10**12
    assert record["life_status"] in ("normal", "invalid") and isinstance(record["version"], str)
    assert isinstance(record["payment_amount"], str) and record["payment_amount"].count(".") == 1
    assert record["account_id__r"]
    # find_explicit_total_num defaults to true (customer-query and findSimple pages): total is filled
    assert body["data"]["total"] == len(app.store.tables["PaymentObj"].ids)
    for off in (False, "false"):
        quiet = call(
            app, "/cgi/crm/v2/data/query", {
                "dataObjectApiName": "PaymentObj", "find_explicit_total_num": off,
                "search_query_info": {"limit": 10, "offset": 0}
            })
        assert quiet["data"]["total"] == 0 and len(quiet["data"]["dataList"]) == 10


def test_query_filters_orders_projection_and_count(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=40)
    all_ids = [
        r["_id"]
        for r in query(app, "AccountObj", orders=[{"fieldName": "_id", "isAsc": True}])["data"]["dataList"]
    ]
    assert all_ids == sorted(all_ids) and len(all_ids) == 40
    page = query(app, "AccountObj",
                 filters=[{"field_name": "_id", "field_values": [all_ids[9]], "operator": "GT"}],
                 orders=[{"fieldName": "_id", "isAsc": True}], limit=5, fieldProjection=["name"])
    rows = page["data"]["dataList"]
    assert [r["_id"] for r in rows] == all_ids[10:15] and set(rows[0]) == {"_id", "name"}
    newest = query(app, "AccountObj", orders=[{"fieldName": "last_modified_time", "isAsc": False}], limit=1)
    assert newest["data"]["dataList"][0]["_id"] == all_ids[-1]
    counted = call(
        app, "/cgi/crm/v2/data/query", {
            "dataObjectApiName": "AccountObj", "find_explicit_total_num": True, "search_query_info": {
                "limit": 10, "offset": 0,
                "filters": [{"field_name": "account_level", "field_values": ["2", "3"], "operator": "IN"}]
            }
        })
    assert 0 < counted["data"]["total"] < 40
    assert query(app, "AccountObj", filters=[{"field_name": "nope", "field_values": ["x"],
                                              "operator": "EQ"}])["errorCode"] == 32000


def test_writes_follow_vendor_rules(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=5)
    owner = [app.credentials.open_user_id]
    created = call(app, "/cgi/crm/v2/data/create", {"object_data": {
        "dataObjectApiName": "AccountObj", "name": "新客户", "owner": owner, "prepaid_balance__c": "12.5"}},
        triggerWorkFlow=False)
    rid = created["dataId"]
    got = call(app, "/cgi/crm/v2/data/get", {"dataObjectApiName": "AccountObj", "objectDataId": rid})["data"]
    assert got["prepaid_balance__c"] == "12.50" and got["version"] == "1" and got["life_status"] == "normal"
    assert call(app, "/cgi/crm/v2/data/create", {"object_data": {"dataObjectApiName": "AccountObj",
                                                                 "owner": owner}})["errorCode"] == 32000
    update = {"dataObjectApiName": "AccountObj", "_id": rid, "prepaid_tier__c": "Lw2xR"}
    assert call(app, "/cgi/crm/v2/data/update", {"object_data": update})["errorCode"] == 0
    after = app.store.get("AccountObj", rid)
    assert after["version"] == "2" and after["name"] == "新客户" and after["prepaid_tier__c"] == "Lw2xR"
    bad_option = {**update, "prepaid_tier__c": "黄金"}
    assert call(app, "/cgi/crm/v2/data/update", {"object_data": bad_option})["errorCode"] == 32000
    assert call(app, "/cgi/crm/v2/data/update",
                {"object_data": {**update, "owner": owner}})["errorCode"] == 32000
    assert call(app, "/cgi/crm/v2/data/update", {"object_data": {**update, "prepaid_balance__c": "1.234"}})[
        "errorCode"] == 32000
    assert call(app, "/cgi/crm/v2/data/update", {"objectDataId": rid, "data": {}})["errorCode"] == 10006
    assert call(app, "/cgi/crm/v2/data/delete",
                {"dataObjectApiName": "AccountObj", "idList": [rid]})["errorCode"] == 32000
    assert call(app, "/cgi/crm/v2/data/invalid", {"dataObjectApiName": "AccountObj", "object_data_id": rid})[
        "errorCode"] == 0
    assert app.store.get("AccountObj", rid)["life_status"] == "invalid"
    assert call(app, "/cgi/crm/v2/data/recover",
                {"dataObjectApiName": "AccountObj", "idList": [rid]})["errorCode"] == 0
    assert app.store.get("AccountObj", rid)["life_status"] == "normal"
    call(app, "/cgi/crm/v2/data/invalid", {"dataObjectApiName": "AccountObj", "object_data_id": rid})
    assert call(app, "/cgi/crm/v2/data/delete",
                {"dataObjectApiName": "AccountObj", "idList": [rid]})["errorCode"] == 0
    assert rid not in app.store.tables["AccountObj"].rows
    other = app.staff[1].open_user_id
    some = next(iter(app.store.tables["AccountObj"].rows))
    call(app, "/cgi/crm/v2/data/changeOwner", {"dataObjectApiName": "AccountObj",
                                              "Data": [{"objectDataId": some, "ownerId": [other]}]})
    assert app.store.get("AccountObj", some)["owner"] == [other]


def test_throttle_and_daily_quota(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=2, rate_limit=5, daily_quota=8)
    codes = [query(app, "AccountObj")["errorCode"] for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 30004]
    assert query(app, "prepay_contract__c")["errorCode"] == 0  # limits are per path (interface)
    app.clock.advance(21)
    codes = [query(app, "AccountObj")["errorCode"] for _ in range(3)]
    assert codes == [0, 0, 30002]  # 6 admitted before, quota 8
    app.clock.advance(86_400)
    assert query(app, "AccountObj")["errorCode"] == 0


def test_describe_object_list_users_and_messages(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app()
    t = token(app)
    creds = {"corpAccessToken": t["corpAccessToken"], "corpId": t["corpId"]}
    described = post(
        app, "/cgi/crm/v2/object/describe", {
            **creds, "currentOpenUserId": app.credentials.open_user_id, "apiName": "PaymentObj",
            "includeDetail": True
        })
    field = described["data"]["describe"]["fields"]["payment_amount"]
    assert field["type"] == "currency" and field["decimal_places"] == 2 and field["is_required"] is True
    objects = call(app, "/cgi/crm/v2/object/list", {})["data"]["objects"]
    assert {"CustomerAccountObj", "PrepayDetailObj",
            "prepay_contract__c"} <= {o["describeApiName"]
                                      for o in objects}
    found = post(app, "/cgi/user/getByMobile", {**creds, "mobile": "13800000000"})
    assert found["empList"][0]["openUserId"] == app.credentials.open_user_id
    sent = post(
        app, "/cgi/message/send",
        {**creds, "toUser": [app.credentials.open_user_id], "msgType": "text",
         "text": {"content": "余额不足"}})
    assert sent["errorCode"] == 0 and app.messages[0]["content"] == "余额不足"


def test_seed_is_deterministic_and_has_anomalies(sandbox_app: Callable[..., SandboxApp]) -> None:
    a, b = sandbox_app(seed=200), sandbox_app(seed=200)
    assert a.credentials == b.credentials
    assert list(a.store.tables["PaymentObj"].rows.values()) == list(
        b.store.tables["PaymentObj"].rows.values())
    assert {"negative_payment", "zero_payment", "invalidated_payment", "duplicate_name", "orphan_payment",
            "account_balance_mismatch", "contract_ends_before_start"} <= set(a.anomalies.by_kind)
    assert len(a.store.tables["AccountObj"].rows) == 200


@pytest.mark.parametrize("fault", ["system_busy", "http_502", "throttle", "disconnect"])
def test_forced_faults(sandbox_app: Callable[..., SandboxApp], fault: str) -> None:
    app = sandbox_app(seed=1)
    t = token(app)
    app.force_fault(fault)
    reply = app.handle(
        "/cgi/crm/v2/data/query", {},
        json.dumps({
            "corpAccessToken": t["corpAccessToken"], "corpId": t["corpId"],
            "currentOpenUserId": app.credentials.open_user_id,
            "data": {"dataObjectApiName": "AccountObj", "search_query_info": {"limit": 10, "offset": 0}}
        }).encode())
    expected = {
        "system_busy": (200, -1), "http_502": (502, None), "throttle": (200, 30004),
        "disconnect": (None, None)
    }
    status, code = expected[fault]
    if status is None:
        assert reply.drop
    else:
        assert reply.status == status and (code is None or reply.body["errorCode"] == code)


def test_find_simple_and_find_one_are_queries_with_field_projection(
        sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=30)
    ids = app.store.tables["AccountObj"].ids
    since = app.store.get("AccountObj", ids[9])["last_modified_time"]
    info = {"offset": 0, "limit": 10, "orders": [{"fieldName": "last_modified_time", "isAsc": False}],
            "filters": [{"operator": "GT", "field_name": "last_modified_time", "field_values": [str(since)]}]}
    # The documented example: a preset object (AccountObj) through the custom-prefix path, projection
    # beside the query.
    simple = call(
        app, "/cgi/crm/custom/v2/data/findSimple",
        {"dataObjectApiName": "AccountObj", "search_query_info": info, "field_projection": ["_id", "name"]})
    assert simple["errorCode"] == 0, simple
    rows = simple["data"]["dataList"]
    assert [r["_id"] for r in rows] == list(reversed(ids[20:30])) and set(rows[0]) == {"_id", "name"}
    assert simple["data"]["total"] == 20  # find_explicit_total_num defaults to true here too
    custom = call(app, "/cgi/crm/custom/v2/data/findSimple", {
        "dataObjectApiName": "prepay_contract__c", "find_explicit_total_num": False,
        "search_query_info": {"offset": 0, "limit": 5, "filters": [], "orders": []}})
    assert len(custom["data"]["dataList"]) == 5 and custom["data"]["total"] == 0

    one = call(app, "/cgi/crm/custom/v2/data/findOne",
               {"dataObjectApiName": "AccountObj", "search_query_info": info, "field_projection": ["name"]})
    assert one["errorCode"] == 0 and one["data"]["_id"] == ids[-1] and set(one["data"]) == {"_id", "name"}
    by_name = call(
        app, "/cgi/crm/custom/v2/data/findOne", {
            "dataObjectApiName": "AccountObj", "search_query_info": {
                "limit": 1, "offset": 0,
                "filters": [{"field_name": "_id", "field_values": [ids[3]], "operator": "EQ"}]
            }
        })
    assert by_name["data"]["_id"] == ids[3] and "name" in by_name["data"]
    none = call(
        app, "/cgi/crm/custom/v2/data/findOne", {
            "dataObjectApiName": "AccountObj", "search_query_info": {
                "limit": 1, "offset": 0,
                "filters": [{"field_name": "name", "field_values": ["没有这个客户"], "operator": "EQ"}]
            }
        })
    assert none["errorCode"] == 0 and none["data"] is None

    # Not a get by id: without search_query_info it is a parameter error, whatever id is sent.
    by_id = call(app, "/cgi/crm/custom/v2/data/findOne",
                 {"dataObjectApiName": "AccountObj", "objectDataId": ids[0]})
    assert by_id["errorCode"] == 32000 and "search_query_info" in by_id["errorMessage"]
    # The docs place both calls under the custom prefix only.
    assert call(app, "/cgi/crm/v2/data/findSimple", {"dataObjectApiName": "AccountObj",
                                                     "search_query_info": info})["errorCode"] == 10006


def test_leads_object_is_in_the_schema_seeded_and_writable(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=20)
    objects = call(app, "/cgi/crm/v2/object/list", {})["data"]["objects"]
    assert {"describeApiName": "LeadsObj", "describeDisplayName": "销售线索", "defineType": "package",
            "isActive": True} in objects
    fields = call(app, "/cgi/crm/v2/object/describe", {"apiName": "LeadsObj"})["data"]["describe"]["fields"]
    assert {"name", "company", "mobile", "email", "source", "biz_status", "leads_pool_id",
            "owner"} <= set(fields)
    assert fields["name"]["is_required"] and fields["biz_status"]["type"] == "select_one"
    leads = query(app, "LeadsObj")["data"]["dataList"]
    assert len(leads) == 4 and all(r["biz_status"] in {"un_assigned", "un_processed", "processed", "closed"}
                                   for r in leads)
    made = call(app, "/cgi/crm/v2/data/create", {"object_data": {
        "dataObjectApiName": "LeadsObj", "name": "新线索", "company": "测试公司", "source": "3",
        "owner": [app.credentials.open_user_id]}})
    assert made["errorCode"] == 0 and app.store.get("LeadsObj", made["dataId"])["company"] == "测试公司"
    bad = call(
        app, "/cgi/crm/v2/data/create", {
            "object_data": {
                "dataObjectApiName": "LeadsObj", "name": "x", "source": "官网",
                "owner": [app.credentials.open_user_id]
            }
        })
    assert bad["errorCode"] == 32000 and "source" in bad["errorMessage"]


def user_call(app: SandboxApp, path: str, **body: Any) -> dict[str, Any]:
    t = token(app)
    return post(app, path, {"corpAccessToken": t["corpAccessToken"], "corpId": t["corpId"], **body})


def test_user_list_and_simple_list_by_department(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=3)
    everyone = user_call(app, "/cgi/user/list", departmentId=999999, fetchChild=True,
                         showDepartmentIdsDetail=True)
    assert everyone["errorCode"] == 0 and "data" not in everyone
    users = everyone["userList"]
    assert [u["openUserId"] for u in users] == [e.open_user_id for e in app.staff]
    assert [u["name"] for u in users if u["isStop"]] == ["赵磊"] and users[1]["mainDepartmentId"] == 1001
    only_root = user_call(app, "/cgi/user/list", departmentId=999999, fetchChild=False,
                          showDepartmentIdsDetail=False)
    assert [u["name"] for u in only_root["userList"]
            ] == ["系统管理员"] and "mainDepartmentId" not in only_root["userList"][0]
    simple = user_call(app, "/cgi/user/simpleList", departmentId=1001)["userList"]
    assert set(simple[0]) == {"openUserId", "name", "nickName"} and len(simple) == 5
    assert user_call(app, "/cgi/user/list", departmentId=4242, fetchChild=True)["errorCode"] == 30007
    assert user_call(app, "/cgi/user/simpleList", departmentId="all")["errorCode"] == 11009


def test_batch_by_upd_time_pages_employees_changed_in_a_window(
        sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=3)
    first = user_call(app, "/cgi/user/get/batchByUpdTime", pageSize=4)  # no window: everyone, page 1
    assert (first["pageNumber"], first["pageCount"], first["totalCount"]) == (1, 2, 6)
    second = user_call(app, "/cgi/user/get/batchByUpdTime", pageSize=4, pageNumber=2)
    names = [e["name"] for e in first["employees"] + second["employees"]]
    assert sorted(names) == sorted(e.name for e in app.staff) and len(second["employees"]) == 2
    times = [e["updateTime"] for e in first["employees"] + second["employees"]]
    assert times == sorted(times) and second["lastChangedTime"] == times[-1]

    since = app.clock.now_ms()
    rep = app.staff[2]
    app.update_employee(rep.open_user_id, name="王芳芳")
    changed = user_call(app, "/cgi/user/get/batchByUpdTime", startTime=since)
    assert [(e["openUserId"], e["name"]) for e in changed["employees"]] == [(rep.open_user_id, "王芳芳")]
    assert changed["totalCount"] == 1 and changed["employees"][0]["isStop"] is False
    window = user_call(app, "/cgi/user/get/batchByUpdTime", startTime=0, endTime=since - 1, pageSize=1000)
    assert window["totalCount"] == 5
    assert user_call(app, "/cgi/user/get/batchByUpdTime", pageSize=1001)["errorCode"] == 32000
    assert user_call(app, "/cgi/user/get/batchByUpdTime", pageNumber=0)["errorCode"] == 32000


def test_writes_refused_as_the_service_would(sandbox_app: Callable[..., SandboxApp]) -> None:
    app = sandbox_app(seed=5)
    owner = [app.credentials.open_user_id]
    rid = app.store.tables["AccountObj"].ids[0]

    def update(**fields: Any) -> dict[str, Any]:
        return call(app, "/cgi/crm/v2/data/update",
                    {"object_data": {"dataObjectApiName": "AccountObj", "_id": rid, **fields}})

    fields = call(app, "/cgi/crm/v2/object/describe", {"apiName": "AccountObj"})["data"]["describe"]["fields"]
    assert fields["name"]["max_length"] == 100 and fields["remark"]["max_length"] == 2000
    too_long = update(name="长" * 101)
    assert too_long["errorCode"] == 32000 and "name" in too_long["errorMessage"] and "100" in too_long[
        "errorMessage"]
    assert update(name="长" * 100)["errorCode"] == 0  # characters, not bytes
    assert update(remark="x" * 2001)["errorCode"] == 32000
    # required fields cannot be emptied by an update
    assert update(name="")["errorCode"] == 32000 and update(name=None)["errorCode"] == 32000
    # dates are epoch milliseconds; ISO text is refused
    made = call(app, "/cgi/crm/custom/v2/data/create", {"object_data": {
        "dataObjectApiName": "prepay_contract__c", "name": "PC-X", "owner": owner,
        "account_id__c": rid, "prepay_amount__c": "10.00", "valid_from__c": "2024-05-01"}})
    assert made["errorCode"] == 32000 and "valid_from__c" in made["errorMessage"]
    # picklists: single and multiple select take option codes only
    assert update(account_level="重要客户")["errorCode"] == 32000
    many = {"type": "select_many",
            "options": [{"label": "甲", "value": "a1"}, {"label": "乙", "value": "b2"}]}
    assert app.store._coerce_value("channels__c", many, ["a1", "b2"], None) == ["a1", "b2"]
    with pytest.raises(SandboxError) as refused:
        app.store._coerce_value("channels__c", many, ["a1", "乙"], None)
    assert refused.value.code == 32000 and "'乙'" in refused.value.message
