"""Object descriptions the sandbox tenant serves: standard objects plus a few custom (`__c`) ones.

Field `type` values and describe keys follow the vendor's describe output (`api_name`, `label`,
`type`, `is_required`, `define_type`, `decimal_places`, `options:[{label, value}]`). Select option
values are opaque codes, as real tenants have them; only describe says what they mean.
"""

from __future__ import annotations

from typing import Any

NUMERIC_TYPES = frozenset({"number", "currency", "percentile", "date", "date_time", "time"})
DECIMAL_TYPES = frozenset({"number", "currency", "percentile"})
LIST_TYPES = frozenset({"employee", "employee_many", "department", "department_many", "select_many",
                        "object_reference_many", "file_attachment", "image", "tag"})
# Lengths this sandbox tenant's text fields are configured with (describe `max_length`); a tenant sets
# them per field, these are the sandbox's choice (docs/fxiaoke.md).
TEXT_LIMITS = {"text": 100, "long_text": 2000, "phone_number": 30, "email": 100, "url": 200}
READ_ONLY_TYPES = frozenset({"auto_number", "formula", "count", "quote"})
# System fields the server maintains; clients cannot set them on create or update.
SYSTEM_FIELDS = frozenset({
    "_id", "create_time", "created_by", "last_modified_time", "last_modified_by", "life_status",
    "life_status_before_invalid", "lock_status", "is_deleted", "version", "object_describe_api_name",
    "extend_obj_data_id"
})

LIFE_STATUS = [("未生效", "ineffective"), ("审核中", "under_review"), ("正常", "normal"),
               ("变更中", "in_change"), ("作废", "invalid")]


def _f(type_: str, label: str, *, required: bool = False, options: list[tuple[str, str]] | None = None,
       places: int | None = None, target: str | None = None, custom: bool = False) -> dict[str, Any]:
    field: dict[str, Any] = {"type": type_, "label": label, "is_required": required,
                             "define_type": "custom" if custom else "package", "is_active": True}
    if options is not None:
        field["options"] = [{"label": lab, "value": val} for lab, val in options]
    if type_ in ("currency", "number", "percentile"):
        field["decimal_places"] = 2 if places is None else places
    if type_ == "currency":
        field["currency_unit"] = "￥"
    if type_ == "date_time":
        field["date_format"] = "yyyy-MM-dd HH:mm"
        field["time_zone"] = "GMT+8"
    if type_ in TEXT_LIMITS:
        field["max_length"] = TEXT_LIMITS[type_]
    if target:
        field["target_api_name"] = target
    return field


def _system(record_types: list[tuple[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    return {
        "_id": _f("text", "ID"),
        "owner": _f("employee", "负责人", required=True),
        "created_by": _f("employee", "创建人"),
        "create_time": _f("date_time", "创建时间"),
        "last_modified_by": _f("employee", "最后修改人"),
        "last_modified_time": _f("date_time", "最后修改时间"),
        "life_status": _f("select_one", "生命状态", options=LIFE_STATUS),
        "lock_status": _f("select_one", "锁定状态", options=[("未锁定", "0"), ("锁定", "1")]),
        "record_type": _f("record_type", "业务类型",
                          options=record_types or [("预设业务类型", "default__c")]),
        "is_deleted": _f("true_or_false", "is_deleted"),
        "version": _f("number", "version", places=0),
        "object_describe_api_name": _f("text", "object_describe_api_name"),
    }


TIER_OPTIONS = [("白银", "tq8Ga"), ("黄金", "Lw2xR"), ("铂金", "p0Zk3")]
REFUND_OPTIONS = [("不可退", "option1"), ("按比例扣费退", "9dKe2"), ("全额退", "mQ7sv")]
TASK_STATUS = [("待处理", "a1Xo2"), ("已完成", "k9Pq7")]

OBJECTS: dict[str, dict[str, Any]] = {
    "AccountObj": {
        "display": "客户", "fields": {
            "name": _f("text", "客户名称", required=True),
            "account_no": _f("auto_number", "客户编号"),
            "account_level": _f("select_one", "客户级别", options=[("重要客户", "jU4rV1qjg"),
                                                               ("普通客户", "2"), ("一般客户", "3")]),
            "account_type": _f("select_one", "客户类型", options=[("代理商", "1"), ("直客", "2")]),
            "tel": _f("phone_number", "电话"),
            "remark": _f("long_text", "备注"),
            "prepaid_balance__c": _f("currency", "预付余额", custom=True),
            "prepaid_available__c": _f("currency", "预付可用余额", custom=True),
            "prepaid_tier__c": _f("select_one", "预付等级", options=TIER_OPTIONS, custom=True),
            "prepaid_flags__c": _f("long_text", "预付提醒", custom=True),
            "prepaid_runway_days__c": _f("number", "余额可用天数", places=0, custom=True),
            "prepaid_synced_at__c": _f("date_time", "余额同步时间", custom=True),
        }
    },
    "prepay_contract__c": {
        "display": "预付合同", "custom": True, "fields": {
            "name": _f("text", "合同编号", required=True),
            "account_id__c": _f("object_reference", "客户", required=True, target="AccountObj", custom=True),
            "prepay_amount__c": _f("currency", "预付金额", required=True, custom=True),
            "due_date__c": _f("date", "付款截止日", custom=True),
            "valid_from__c": _f("date", "生效日期", custom=True),
            "valid_until__c": _f("date", "到期日期", custom=True),
            "refund_policy__c": _f("select_one", "退款政策", options=REFUND_OPTIONS, custom=True),
            "refund_fee_pct__c": _f("percentile", "退款手续费率", custom=True),
            "credit_limit__c": _f("currency", "信用额度", custom=True),
            "low_balance_threshold__c": _f("currency", "低余额提醒线", custom=True),
            "contract_status__c": _f("select_one", "合同状态",
                                     options=[("执行中", "xR41b"), ("已结束", "Hh7Qe")], custom=True),
        }
    },
    "PaymentObj": {
        "display": "回款", "fields": {
            "name": _f("auto_number", "回款编号"),
            "account_id": _f("object_reference", "客户名称", required=True, target="AccountObj"),
            "payment_amount": _f("currency", "本次回款金额", required=True),
            "payment_time": _f("date", "回款日期", required=True),
            "payment_term": _f("select_one", "回款方式",
                               options=[("转账", "post"), ("现金", "1"), ("支票", "2")]),
            "remark": _f("long_text", "备注"),
            "contract_id__c": _f("object_reference", "预付合同", target="prepay_contract__c", custom=True),
        }
    },
    "CustomerAccountObj": {
        "display": "客户账户", "fields": {
            "name": _f("auto_number", "账户ID"),
            "customer_id": _f("object_reference", "客户", required=True, target="AccountObj"),
            "prepay_balance": _f("currency", "预存款余额"),
            "prepay_available_balance": _f("currency", "预存款可用余额"),
            "prepay_locked_balance": _f("currency", "预存款锁定余额"),
            "rebate_balance": _f("currency", "返利余额"),
            "settle_type": _f("select_one", "结算方式", options=[("先付", "prepay"), ("后付", "postpay")]),
            "credit_quota": _f("currency", "信用额度"),
        }
    },
    "PrepayDetailObj": {
        "display": "预存款", "record_types": [("收入", "income_record_type__c"), ("支出", "default__c")],
        "fields": {
            "name": _f("auto_number", "明细编码"),
            "customer_id": _f("object_reference", "客户", required=True, target="AccountObj"),
            "customer_account_id": _f("object_reference", "客户账户", target="CustomerAccountObj"),
            "amount": _f("currency", "金额", required=True),
            "transaction_time": _f("date_time", "交易时间"),
            "payment_id": _f("object_reference", "回款", target="PaymentObj"),
            "income_type": _f("select_one", "收入类型", options=[("回款", "1"), ("线下充值", "2")]),
            "outcome_type": _f("select_one", "支出类型", options=[("订单抵扣", "1"), ("退款", "2")]),
            "remark": _f("long_text", "备注"),
        }
    },
    "ActiveRecordObj": {
        "display": "销售记录", "fields": {
            "name": _f("auto_number", "编号"),
            "active_record_content": _f("long_text", "内容", required=True),
            "active_record_type": _f("select_one", "类型", options=[("跟进", "1"), ("提醒", "ps7Tz")]),
            "related_api_names": _f("select_many", "关联对象"),
            "related_object_data": _f("text", "关联数据"),
            "account_id": _f("object_reference", "客户", target="AccountObj"),
        }
    },
    "followup_task__c": {
        "display": "跟进任务", "custom": True, "fields": {
            "name": _f("text", "主题", required=True),
            "marker__c": _f("text", "同步标记", custom=True),
            "status__c": _f("select_one", "状态", options=TASK_STATUS, custom=True),
            "account_id__c": _f("object_reference", "客户", target="AccountObj", custom=True),
            "due_date__c": _f("date", "截止日期", custom=True),
            "description__c": _f("long_text", "描述", custom=True),
        }
    },
    "LeadsObj": {
        "display": "销售线索", "fields": {
            "name": _f("text", "姓名", required=True),
            "company": _f("text", "公司"),
            "mobile": _f("phone_number", "手机"),
            "tel": _f("phone_number", "电话"),
            "email": _f("email", "邮件"),
            "url": _f("url", "网址"),
            "address": _f("text", "详细地址"),
            "job_title": _f("text", "职务"),
            "department": _f("text", "部门"),
            "source": _f("select_one", "线索来源",
                         options=[("广告", "1"), ("研讨会", "2"), ("官网", "3"), ("其他", "4")]),
            "biz_status": _f(
                "select_one", "线索状态", options=[("未分配", "un_assigned"), ("待处理", "un_processed"),
                                               ("已跟进", "processed"), ("已转换", "transformed"),
                                               ("无效", "closed")]),
            "close_reason": _f("long_text", "无效原因"),
            "assigned_time": _f("date_time", "分配时间"),
            "leads_pool_id": _f("object_reference", "线索池"),
            "marketing_event_id": _f("object_reference", "市场活动"),
            "account_id": _f("object_reference", "客户", target="AccountObj"),
            "remark": _f("long_text", "备注"),
        }
    },
    "SaleContractObj": {
        "display": "销售合同", "fields": {
            "name": _f("text", "合同编号", required=True),
            "account_id": _f("object_reference", "客户", required=True, target="AccountObj"),
        }
    },
}


def fields_of(api_name: str) -> dict[str, dict[str, Any]]:
    """All fields (system + object) of an object."""
    spec = OBJECTS[api_name]
    return {**_system(spec.get("record_types")), **spec["fields"]}


def describe(api_name: str) -> dict[str, Any]:
    """The `data.describe` body for an object."""
    spec = OBJECTS[api_name]
    fields = {name: {"api_name": name, **meta} for name, meta in fields_of(api_name).items()}
    return {"api_name": api_name, "display_name": spec["display"],
            "define_type": "custom" if spec.get("custom") else "package", "is_active": True, "fields": fields}


FIELD_CACHE: dict[str, dict[str, dict[str, Any]]] = {name: fields_of(name) for name in OBJECTS}
