"""Statement labels in Chinese and English."""

from __future__ import annotations

from connector.errors import InvalidInput

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Prepaid account statement", "customer": "Customer", "account": "Customer key",
        "period": "Period", "from_start": "from the first entry", "to": "to", "generated": "Generated",
        "currency": "Currency", "opening": "Opening balance", "closing": "Closing balance", "date": "Date",
        "type": "Type", "reference": "Reference", "description": "Description", "amount": "Amount",
        "balance": "Balance", "no_entries": "No entries in this period.", "lots": "Prepaid lots at period end",
        "lot": "Lot", "received": "Received", "expires": "Expires", "original": "Original",
        "remaining": "Remaining",
        "refundable": "Refundable", "yes": "yes", "no": "no", "never": "never", "policy": "Refund policy",
        "refundable_now": "Refundable at period end (rules in force)", "totals": "Totals for the period",
        "tz": "Times shown in",
        "page_note": "This statement is computed from the ledger; amounts are in the account currency.",
        "deposit": "Deposit", "consume": "Drawdown", "refund": "Refund", "refund_fee": "Refund fee",
        "expire": "Expiry", "adjust": "Adjustment", "reverse": "Reversal",
        "policy_full": "Full refund of the unused paid balance",
        "policy_pro_rata": "Pro rata to the unused part of each lot's validity",
        "policy_none": "No refund under the contract", "policy_fee": "Refund less a fee of {pct}%",
        "refund_basis": "Why this refundable amount", "basis_contract": "the contract's refund policy decides it",
        "basis_rules": "the rules in force decide it, not the contract",
        "standing": "Standing", "standing_none": "nothing open",
        "overdue": "a payment is overdue", "expiring_soon": "the contract ends on {ends}",
        "expired": "the contract ended on {ends}", "orphaned": "this money has no customer in the CRM",
    },
    "zh": {
        "title": "预付款账户对账单", "customer": "客户", "account": "客户编号", "period": "期间",
        "from_start": "自首笔记录起", "to": "至", "generated": "生成时间", "currency": "币种",
        "opening": "期初余额", "closing": "期末余额", "date": "日期", "type": "类型", "reference": "参考号",
        "description": "说明", "amount": "金额", "balance": "余额", "no_entries": "本期无交易记录。",
        "lots": "期末预付款明细", "lot": "批次", "received": "入账日期", "expires": "到期日", "original": "原始金额",
        "remaining": "剩余金额", "refundable": "可退", "yes": "是", "no": "否", "never": "无期限",
        "policy": "退款政策", "refundable_now": "期末可退金额（按现行规定）", "totals": "本期合计", "tz": "时区",
        "page_note": "本对账单根据账本计算，金额以账户币种列示。",
        "deposit": "充值", "consume": "消费", "refund": "退款", "refund_fee": "退款手续费", "expire": "过期",
        "adjust": "调整", "reverse": "冲正",
        "policy_full": "未使用的已付余额全额退还", "policy_pro_rata": "按各批次未使用的有效期比例退还",
        "policy_none": "合同约定不予退款", "policy_fee": "退款扣除 {pct}% 手续费",
        "refund_basis": "可退金额依据", "basis_contract": "依合同退款政策计算",
        "basis_rules": "依现行规定计算（不依合同）",
        "standing": "账户状态", "standing_none": "无待处理事项",
        "overdue": "有逾期未付款项", "expiring_soon": "合同将于 {ends} 到期", "expired": "合同已于 {ends} 到期",
        "orphaned": "此款项在 CRM 中没有对应客户",
    },
}


def labels(lang: str) -> dict[str, str]:
    """The label set for `zh` or `en`."""
    if lang not in LABELS:
        raise InvalidInput(f"lang: {lang!r} is not one of {', '.join(LABELS)}", field="lang")
    return LABELS[lang]
