"""Read YAML the strict way: no duplicate keys (YAML's last-wins hides typos) and bounded nesting.

PyYAML composes nested nodes recursively, so a file nested a few thousand levels deep ends in a
RecursionError; and its SafeLoader keeps the last of two equal keys without a word. Both become a
ConfigError naming the file, the line and the fix.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from connector.errors import ConfigError

MAX_DEPTH = 50
"""Deepest nesting accepted (a mapping file needs about six levels)."""

_MERGE = "tag:yaml.org,2002:merge"


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("too deep")
        self.mark = mark


class _DuplicateKey(Exception):
    def __init__(self, node: MappingNode, key: Any, first: Node, second: Node) -> None:
        super().__init__("duplicate key")
        self.node = node
        self.key = key
        self.first = first
        self.second = second


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:  # type: ignore[override]
        """Compose one node, counting how deep it sits; refuse before Python's recursion limit is near."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key written twice (merge keys `<<` are not duplicates)."""
        seen: dict[Any, Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: SafeConstructor says so below
                continue
            if first is not None:
                raise _DuplicateKey(node, key, first, key_node)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _path_to(root: Node, target: Node) -> str:
    """Dotted path of `target` inside `root` (as the mapping errors name it), '' for the top level."""
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if isinstance(node, MappingNode):
            for key, value in node.value:
                name = str(key.value) if not isinstance(key.value, list) else "?"
                stack.append((value, f"{path}.{name}" if path else name))
        elif isinstance(node, SequenceNode):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node.value))
    return ""


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; raise ConfigError naming `source`, the line and the reason."""
    loader = StrictLoader(text)
    root: Node | None = None
    try:
        root = loader.get_single_node()
        return loader.construct_document(root) if root is not None else None
    except _TooDeep as exc:
        raise ConfigError(
            f"{source}: line {exc.mark.line + 1} column {exc.mark.column + 1}: nested more than "
            f"{MAX_DEPTH} levels; a mapping file needs only a few, so look for unbalanced or "
            "runaway brackets", file=source, reason=f"nested more than {MAX_DEPTH} levels") from None
    except _DuplicateKey as exc:
        where = _path_to(root, exc.node) if root is not None else ""
        line, first = exc.second.start_mark.line + 1, exc.first.start_mark.line + 1
        raise ConfigError(
            f"{source}: {where + ': ' if where else ''}duplicate key {exc.key!r} on line {line} "
            f"(first on line {first}); YAML would silently keep only the last one, so remove or "
            "rename one of them", file=source, path=where or "(top level)",
            reason=f"duplicate key {exc.key!r} on lines {first} and {line}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where} is not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          file=source) from None
    finally:
        loader.dispose()
