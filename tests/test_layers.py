"""The package's layers import only downwards: a lower layer never imports a higher one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "connector"

# module prefix -> packages it must never import (directly or inside a function)
FORBIDDEN = {
    "connector.money": ("connector.db", "connector.ledger", "connector.sync", "connector.ops",
                        "connector.cli", "connector.adapters", "connector.config"),
    "connector.timeutil": ("connector.db", "connector.ledger", "connector.sync", "connector.ops",
                           "connector.cli", "connector.config"),
    "connector.db": ("connector.sync.", "connector.ops.", "connector.push.", "connector.cli",
                     "connector.adapters", "connector.config", "connector.reports", "connector.statements",
                     "connector.ledger.service"),
    "connector.ledger": ("connector.sync", "connector.ops", "connector.cli", "connector.adapters",
                         "connector.config", "connector.reports", "connector.statements"),
    "connector.config": ("connector.sync", "connector.ops", "connector.cli", "connector.adapters",
                         "connector.ledger"),
    "connector.ops.tables": ("connector.sync", "connector.ledger"),
    "connector.sync": ("connector.cli", "connector.ops"),
    # push turns CRM calls into runs; what runs them is handed in from above (connector.app)
    "connector.push": ("connector.cli", "connector.ops", "connector.api", "connector.reports",
                       "connector.statements"),
    # the pull, top to bottom: paging -> per-stream handlers -> terms / posting policy -> poster -> texts
    "connector.sync.handlers": ("connector.sync.pull", ),
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
ALLOWED = {"connector.db.schema": ("connector.sync.tables", "connector.ops.tables", "connector.push.tables")}


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


def _forbidden(name: str, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    rules = [bad for prefix, bad in table.items() if name == prefix or name.startswith(prefix + ".")]
    return tuple(b for rule in rules for b in rule)


def _wrong_imports(name: str, path: Path, rules: dict[str, tuple[str, ...]]) -> list[str]:
    bad = _forbidden(name, rules)
    allowed = ALLOWED.get(name, ())
    return sorted(i for i in _imports(path)
                  if any(i == b.rstrip(".") or i.startswith(b.rstrip(".") + ".") for b in bad)
                  and not any(i == a or i.startswith(a + ".") for a in allowed))


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_import_reaches_up_a_layer(name: str, path: Path) -> None:
    wrong = _wrong_imports(name, path, FORBIDDEN)
    assert not wrong, f"{name} imports {wrong}, a layer above it"


# The wiring sits above everything: `connector.app` builds each connection's adapter and engine, so no
# layer below it imports it, and the engine and the ledger reach a CRM only through `adapters.base`.
# Kept apart from FORBIDDEN, which holds one rule per package prefix.
WIRING: dict[str, tuple[str, ...]] = {
    "connector.sync": ("connector.app", "connector.adapters.zoho", "connector.adapters.fxiaoke"),
    "connector.push": ("connector.app", "connector.adapters.zoho", "connector.adapters.fxiaoke"),
    "connector.ledger": ("connector.app",),
    "connector.adapters": ("connector.app", "connector.sync", "connector.ledger", "connector.ops",
                           "connector.cli", "connector.reports", "connector.statements"),
    "connector.mapping": ("connector.app", "connector.sync", "connector.ledger", "connector.ops",
                          "connector.cli", "connector.adapters", "connector.db"),
    "connector.domain": ("connector.app", "connector.sync", "connector.ledger", "connector.ops",
                         "connector.cli", "connector.adapters", "connector.mapping", "connector.config",
                         "connector.db"),
}


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_wiring_stays_above_and_the_engine_imports_no_vendor(name: str, path: Path) -> None:
    wrong = _wrong_imports(name, path, WIRING)
    assert not wrong, f"{name} imports {wrong}; adapters and engines are built in connector.app"


VENDOR = re.compile(r"zoho|fxiaoke", re.IGNORECASE)
VENDOR_FREE = ("connector.sync", "connector.ledger", "connector.push")


def _code_words(path: Path) -> list[str]:
    """Every name and string literal of a module's code; docstrings and comments (prose) left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
             and isinstance(node.value.value, str)}
    words: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.append(node.name)
        elif isinstance(node, (ast.arg, ast.keyword)) and node.arg:
            words.append(node.arg)
        elif isinstance(node, ast.alias):
            words += [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom) and node.module:
            words.append(node.module)
    return words


@pytest.mark.parametrize(("name", "path"), [(n, p) for n, p in _modules() if n.startswith(VENDOR_FREE)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_engine_and_ledger_code_name_no_vendor(name: str, path: Path) -> None:
    named = sorted({w for w in _code_words(path) if VENDOR.search(w)})
    assert not named, f"{name} names a vendor in its code: {named}; that belongs in connector/adapters"
