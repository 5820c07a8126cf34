"""Customer statements: opening and closing balances, every entry, open lots, refund policy; zh/en."""

from connector.statements.builder import CustomerStatement, StatementLoader
from connector.statements.render import to_csv, to_html, to_json

__all__ = ["CustomerStatement", "StatementLoader", "to_csv", "to_html", "to_json"]
