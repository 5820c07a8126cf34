"""The `prepaid-sync` command line (typer + rich)."""

from connector.cli.app import app, main

__all__ = ["app", "main"]
