"""`prepaid-sync serve`: the ledger over HTTP for billing systems.

Kept import-light on purpose: `connector.db.schema` imports `connector.api.tables`, and the CLI's
`apikey` commands use `connector.api.keys`, neither of which needs the web stack. The app itself is
built by `connector.api.app.create_app` from one router per concern (`health`, `ledger_routes`,
`customer_routes`, `docs`); later routers (`/hooks/...`, `/metrics`) are added there the same way.
"""
