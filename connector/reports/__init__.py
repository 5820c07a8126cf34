"""Reports over the ledger: liability, expiry and breakage, runway, punctuality, risk, top customers."""

from connector.reports.attributes import CustomerAttributes, CustomerInfo, NoAttributes, StaticAttributes
from connector.reports.builder import build_report
from connector.reports.model import AccountRow, Report

__all__ = ["AccountRow", "CustomerAttributes", "CustomerInfo", "NoAttributes", "Report", "StaticAttributes",
           "build_report"]
