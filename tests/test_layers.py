"""The package's layers import only downwards: a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "connector"

# module prefix -> packages it must never import (directly or inside a function)
FORBIDDEN = {
    "connector.money": ("connector.db", "connector.ledger", "connector.sync", "connector.ops", "connector.cli",
                        "connector.adapters", "connector.config"),
    "connector.timeutil": ("connector.db", "connector.ledger", "connector.sync", "connector.ops", "connector.cli",
                           "connector.config"),
    "connector.db": ("connector.sync.", "connector.ops.", "connector.cli", "connector.adapters", "connector.config",
                     "connector.reports", "connector.statements", "connector.ledger.service"),
    "connector.ledger": ("connector.sync", "connector.ops", "connector.cli", "connector.adapters", "connector.config",
                         "connector.reports", "connector.statements"),
    "connector.config": ("connector.sync", "connector.ops", "connector.cli", "connector.adapters",
                         "connector.ledger"),
    "connector.ops.tables": ("connector.sync", "connector.ledger"),
    "connector.sync": ("connector.cli", "connector.ops"),
    # the pull, top to bottom: paging -> per-stream handlers -> terms / posting policy -> poster -> texts
    "connector.sync.handlers": ("connector.sync.pull",),
    "connector.sync.terms": ("connector.sync.pull", "connector.sync.handlers", "connector.sync.posting"),
    "connector.sync.posting": ("connector.sync.pull", "connector.sync.handlers", "connector.sync.terms"),
    "connector.sync.poster": ("connector.sync.pull", "connector.sync.handlers", "connector.sync.terms",
                              "connector.sync.posting"),
    "connector.sync.pulled": ("connector.sync.pull", "connector.sync.handlers", "connector.sync.terms",
                              "connector.sync.posting", "connector.sync.poster"),
    "connector.sync.messages": ("connector.db", "connector.ledger", "connector.sync.", "connector.adapters"),
    # reconcile reads its snapshot; the snapshot knows nothing of the plan
    "connector.sync.snapshot": ("connector.sync.reconcile", "connector.sync.push"),
    # generic row helpers know no layer's tables
    "connector.db.rows": ("connector.ledger", "connector.sync", "connector.db.schema"),
}
# the one place that gathers every layer's tables
ALLOWED = {"connector.db.schema": ("connector.sync.tables", "connector.ops.tables")}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _forbidden(name: str) -> tuple[str, ...]:
    rules = [bad for prefix, bad in FORBIDDEN.items() if name == prefix or name.startswith(prefix + ".")]
    return tuple(b for rule in rules for b in rule)


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_import_reaches_up_a_layer(name: str, path: Path) -> None:
    bad = _forbidden(name)
    allowed = ALLOWED.get(name, ())
    wrong = sorted(i for i in _imports(path)
                   if any(i == b.rstrip(".") or i.startswith(b.rstrip(".") + ".") for b in bad)
                   and not any(i == a or i.startswith(a + ".") for a in allowed))
    assert not wrong, f"{name} imports {wrong}, a layer above it"
