"""The API sits on top: no layer below imports `connector.api` (the table registry imports only its table
module), and what the CLI and the schema need of it (`tables`, `keys`) does not pull in the web stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "connector"
BELOW = ("ledger", "sync", "ops", "adapters", "reports", "statements", "compliance", "mapping", "db",
         "money.py", "config.py", "errors.py", "redact.py", "timeutil.py", "testpoints.py")
ALLOWED = {"connector.api.tables"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", [p for b in BELOW for p in ((ROOT / b).rglob("*.py") if (ROOT / b).is_dir()
                                                              else [ROOT / b])],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_layer_below_imports_the_api(path: Path) -> None:
    wrong = {i for i in _imports(path) if i.startswith("connector.api") and i not in ALLOWED}
    assert not wrong, f"{path} imports {wrong}"


def test_the_key_store_and_tables_load_without_the_web_stack() -> None:
    code = ("import sys; import connector.db.schema, connector.api.keys; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
