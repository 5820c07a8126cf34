"""Module and field metadata of the sandbox org, shaped like `GET /settings/modules` and
`/settings/fields`."""

from __future__ import annotations

from typing import Any

JSON_TYPES = {
    "text": "string", "textarea": "string", "email": "string", "phone": "string", "website": "string",
    "picklist": "string", "multiselectpicklist": "jsonarray", "integer": "integer", "bigint": "string",
    "double": "double", "currency": "double", "percent": "double", "boolean": "boolean", "date": "string",
    "datetime": "string", "lookup": "jsonobject", "ownerlookup": "jsonobject", "userlookup": "jsonobject",
    "autonumber": "string",
}
DEFAULT_LENGTH = {"text": 255, "textarea": 2000, "email": 100, "phone": 30, "website": 255, "picklist": 120,
                  "integer": 9, "bigint": 18, "double": 16, "currency": 16, "percent": 5, "boolean": 5,
                  "date": 20, "datetime": 120, "lookup": 120, "ownerlookup": 120, "userlookup": 120,
                  "multiselectpicklist": 2000, "autonumber": 255}
CURRENCIES = ["USD", "EUR", "GBP", "INR", "JPY", "CNY", "AUD", "SGD"]
SYSTEM_FIELDS = ("id", "Created_Time", "Modified_Time", "Created_By", "Modified_By")


def field(api_name: str, data_type: str, *, label: str | None = None, mandatory: bool = False,
          custom: bool = False, read_only: bool = False, picklist: list[str] | None = None,
          lookup_module: str | None = None, length: int | None = None, decimal_place: int | None = None,
          unique: bool = False, field_id: str = "") -> dict[str, Any]:
    """One field's metadata with the keys Zoho returns."""
    label = label or api_name.replace("_", " ")
    meta: dict[str, Any] = {
        "api_name": api_name, "id": field_id, "field_label": label, "display_label": label,
        "data_type": data_type, "json_type": JSON_TYPES[data_type],
        "length": length or DEFAULT_LENGTH[data_type],
        "decimal_place": decimal_place if decimal_place is not None else (
            2 if data_type in ("currency", "double", "percent") else None),
        "custom_field": custom, "read_only": read_only, "field_read_only": read_only,
        "system_mandatory": mandatory, "visible": True, "searchable": True, "sortable": True,
        "filterable": True, "mass_update": not read_only, "virtual_field": False,
        "unique": {"casesensitive": "false"} if unique else {},
        "external": None, "formula": {}, "crypt": None, "multiselectlookup": {}, "subform": None,
        "auto_number": {}, "created_source": "custom" if custom else "default",
        "operation_type": {"web_update": not read_only, "api_create": not read_only,
                           "web_create": not read_only, "api_update": not read_only},
        "pick_list_values": [], "lookup": {}, "currency": {},
        "history_tracking": None, "additional_column": None, "type": "used",
        # The rest of the keys of Zoho's own example answer (crm-oas v8.0, getFields), with its values.
        "associated_module": None, "association_details": None, "tooltip": None, "hipaa_compliance": None,
        "hipaa_compliance_enabled": False, "private": None, "webhook": True, "businesscard_supported": False,
        "colour_code_enabled_by_system": False, "enable_colour_code": False, "display_field": False,
        "pick_list_values_sorted_lexically": False, "separator": False, "customizable_properties": [],
        "multi_module_lookup": {}, "rollup_summary": {}, "created_time": None, "modified_time": None,
        "column_name": api_name.upper(), "display_type": -1, "ui_type": 1, "quick_sequence_number": "0",
        "email_parser": {"fields_update_supported": False, "record_operations_supported": False},
        "convert_mapping": {"Contacts": None, "Deals": None, "Accounts": None},
        "view_type": {"view": True, "edit": not read_only, "quick_create": False, "create": not read_only},
        "profiles": [{"permission_type": "read_only" if read_only else "read_write", "name": "Administrator",
                      "id": "4876876000000015972"}],
        "layout_associations": [{"api_name": "Standard__s", "name": "Standard", "id": "4876876000000095055"}],
    }
    if data_type == "textarea":  # Zoho's example answers carry `textarea` only on text areas
        meta["textarea"] = {"type": "small"}
    if data_type == "currency":
        meta["currency"] = {"rounding_option": "normal", "precision": decimal_place or 2}
    if picklist is not None:
        meta["pick_list_values"] = [
            {"display_value": v, "actual_value": v, "reference_value": v, "sequence_number": i + 1,
             "id": f"{field_id or '4876876000000700'}{i:02d}", "type": "used", "colour_code": None}
            for i, v in enumerate(["-None-", *picklist] if data_type == "picklist" else picklist)]
    if lookup_module and data_type == "lookup":
        meta["lookup"] = {"module": {"api_name": lookup_module, "id": ""}, "api_name": None,
                          "display_label": None, "id": None}
    return meta


def _system(module: str) -> list[dict[str, Any]]:
    return [
        field("id", "bigint", label="Record Id", read_only=True, length=18),
        field("Owner", "ownerlookup", label=f"{module} Owner", lookup_module="users"),
        field("Created_Time", "datetime", read_only=True),
        field("Modified_Time", "datetime", read_only=True),
        field("Created_By", "ownerlookup", read_only=True, lookup_module="users"),
        field("Modified_By", "ownerlookup", read_only=True, lookup_module="users")
    ]


def _currency_fields() -> list[dict[str, Any]]:
    return [
        field("Currency", "picklist", picklist=CURRENCIES),
        field("Exchange_Rate", "double", decimal_place=9)
    ]


def default_modules() -> dict[str, dict[str, Any]]:
    """Modules of a fresh sandbox org: (module metadata, field list) keyed by API name."""
    accounts = [
        *_system("Account"), field("Account_Name", "text", mandatory=True, length=200),
        field("Account_Number", "bigint"), field("Phone", "phone"), field("Website", "website"),
        field("Account_Type", "picklist", picklist=["Customer", "Partner", "Prospect", "Reseller"]),
        field("Industry", "picklist", picklist=["Software", "Retail", "Manufacturing", "Services", "Media"]),
        field("Annual_Revenue", "currency"), *_currency_fields(), field("Description", "textarea"),
        field("Ledger_Customer_ID", "text", custom=True, length=50, unique=True),
        field("Prepaid_Balance", "currency", custom=True),
        field("Prepaid_Available", "currency", custom=True),
        field("Prepaid_Tier", "picklist", custom=True, picklist=["Bronze", "Silver", "Gold", "Platinum"]),
        field("Prepaid_Runway_Days", "integer", custom=True),
        field("Prepaid_Flags", "text", custom=True, length=255),
        field("Prepaid_Synced_At", "datetime", custom=True),
    ]
    deals = [
        *_system("Deal"), field("Deal_Name", "text", mandatory=True, length=120),
        field("Account_Name", "lookup", lookup_module="Accounts", label="Account Name"),
        field("Amount", "currency"), field("Closing_Date", "date"),
        field("Stage", "picklist", mandatory=True,
              picklist=["Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"]),
        *_currency_fields(),
        field("Prepay_Amount", "currency", custom=True), field("Valid_From", "date", custom=True),
        field("Valid_Until", "date", custom=True),
        field("Refund_Policy", "picklist", custom=True, picklist=["Full", "Prorated", "No Refund"]),
        field("Refund_Fee_Pct", "percent", custom=True), field("Credit_Limit", "currency", custom=True),
        field("Low_Balance_Threshold", "currency", custom=True), field("Description", "textarea"),
    ]
    payments = [
        *_system("Payment"),
        field("Name", "text", mandatory=True, length=120, label="Payment Name"),
        field("Account", "lookup", lookup_module="Accounts", custom=True),
        field("Deal", "lookup", lookup_module="Deals", custom=True),
        field("Amount", "currency", mandatory=True, custom=True),
        *_currency_fields(),
        field("Payment_Date", "date", custom=True),
        field("Payment_Status", "picklist", custom=True,
              picklist=["Received", "Pending", "Refunded", "Failed"]),
        field("Payment_Method", "picklist", custom=True, picklist=["Bank Transfer", "Card", "Cash",
                                                                   "Cheque"]),
    ]
    tasks = [
        *_system("Task"), field("Subject", "text", mandatory=True), field("Due_Date", "date"),
        field("Status", "picklist", picklist=["Not Started", "Deferred", "In Progress", "Completed",
                                              "Waiting for input"]),
        field("Priority", "picklist", picklist=["High", "Highest", "Low", "Lowest", "Normal"]),
        field("What_Id", "lookup", label="Related To"), field("Who_Id", "lookup", lookup_module="Contacts",
                                                             label="Contact Name"),
        field("Description", "textarea"), field("Closed_Time", "datetime", read_only=True),
        field("Prepaid_Sync_Marker", "text", custom=True, length=255),
    ]
    contacts = [*_system("Contact"), field("First_Name", "text", length=40),
                field("Last_Name", "text", mandatory=True, length=80), field("Email", "email"),
                field("Account_Name", "lookup", lookup_module="Accounts")]
    spec = [("Accounts", "Account", "Accounts", "default", accounts),
            ("Contacts", "Contact", "Contacts", "default", contacts),
            ("Deals", "Deal", "Deals", "default", deals),
            ("Tasks", "Task", "Tasks", "default", tasks),
            ("Prepaid_Payments", "Prepaid Payment", "Prepaid Payments", "custom", payments)]
    out: dict[str, dict[str, Any]] = {}
    module_ids = {api: f"48768760000000021{n:02d}" for n, (api, *_rest) in enumerate(spec)}
    for n, (api, singular, plural, generated, fields) in enumerate(spec):
        for i, meta in enumerate(fields):
            meta["id"] = f"48768760000006{n:02d}{i:03d}"
            for j, pick in enumerate(meta["pick_list_values"]):
                pick["id"] = f"48768760000007{n:02d}{i:03d}{j:02d}"
            target = (meta["lookup"] or {}).get("module")
            if target:
                target["id"] = module_ids.get(target["api_name"], "4876876000000002199")
        out[api] = {
            "module": module_meta(api, singular, plural, generated, module_ids[api]), "fields": fields
        }
    return out


def module_meta(api: str, singular: str, plural: str, generated: str, module_id: str) -> dict[str, Any]:
    """Module metadata with the keys `GET /settings/modules` returns."""
    return {"api_name": api, "module_name": api, "id": module_id, "api_supported": True,
            "generated_type": generated, "singular_label": singular, "plural_label": plural,
            "actual_singular_label": singular, "actual_plural_label": plural, "creatable": True,
            "editable": True, "deletable": True, "viewable": True, "convertable": False,
            "quick_create": True, "status": "visible", "visibility": 1, "show_as_tab": True,
            "modified_time": "2025-11-02T09:00:00+05:30", "modified_by": None,
            "profiles": [{"name": "Administrator", "id": "4876876000000015972"}], "profile_count": 1,
            "parent_module": {}, "business_card_field_limit": 5, "sequence_number": 1,
            # The rest of the keys of Zoho's own example answer (crm-oas v8.0, getModules).
            "description": None, "web_link": None, "arguments": [], "feeds_required": False,
            "isBlueprintSupported": True, "presence_sub_menu": True, "sub_menu_available": True,
            "recycle_bin_on_delete": True, "has_more_profiles": False, "access_type": "org_based",
            "private_profile": None, "global_search_supported": True, "lookupable": True,
            "public_fields_configured": False}
