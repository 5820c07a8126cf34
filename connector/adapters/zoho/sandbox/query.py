"""A useful COQL subset and the Search API criteria language, evaluated over sandbox records."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'(?:[^'\\]|\\.|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<>|>=|<=|=|<|>|\(|\)|,)
                    |(?P<word>[A-Za-z_$][A-Za-z0-9_$.]*))""", re.X)
MAX_LIMIT = 2000
MAX_OFFSET_TOTAL = 100_000
MAX_COLUMNS = 50


class QueryError(Exception):
    """A COQL or criteria problem, carrying Zoho's error code and details."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


@dataclass
class Query:
    """A parsed COQL select."""

    columns: list[str]
    module: str
    where: Predicate
    order: list[tuple[str, bool]]
    limit: int
    offset: int


def value_of(rec: dict[str, Any], name: str) -> Any:
    """Comparable value of a record field (lookups by id, times as epoch seconds)."""
    if name == "Modified_Time":
        return rec["_mtime"]
    if name == "Created_Time":
        return rec["_ctime"]
    value = rec.get(name.split(".")[0])
    if isinstance(value, dict):
        return value.get("id")
    return value


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, int) and not isinstance(left, bool) and isinstance(right, str) and "T" in right:
        try:
            return left, int(datetime.fromisoformat(right.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return left, right
    if isinstance(left,
                  (int, Decimal)) and not isinstance(left, bool) and isinstance(right, (str, int, Decimal)):
        try:
            return Decimal(left), Decimal(str(right))
        except InvalidOperation:
            return left, right
    if isinstance(left, str) and isinstance(right, (int, Decimal)):
        return left, str(right)
    if isinstance(left, bool) and isinstance(right, str):
        return left, right.lower() == "true"
    if isinstance(left, str) and isinstance(right, date):
        return left, right.isoformat()
    return left, right


def compare(op: str, left: Any, right: Any) -> bool:
    """Apply one comparison operator the way Zoho's query engines do."""
    if op in ("is null", "is not null"):
        empty = left in (None, "", [])
        return empty if op == "is null" else not empty
    if op in ("in", "not in"):
        hit = any(_coerce(left, r)[0] == _coerce(left, r)[1] for r in right)
        return hit if op == "in" else not hit
    if left is None:
        return op in ("!=", "<>", "not like")
    if op == "between":
        lo, hi = (_coerce(left, r)[1] for r in right)
        return bool(lo <= _coerce(left, right[0])[0] <= hi)
    lft, rgt = _coerce(left, right)
    if op in ("like", "not like"):
        pattern = "^" + re.escape(str(rgt)).replace("%", ".*").replace("_", ".") + "$"
        hit = re.match(pattern, str(lft), re.I) is not None
        return hit if op == "like" else not hit
    try:
        return bool({"=": lft == rgt, "!=": lft != rgt, "<>": lft != rgt, ">": lft > rgt, ">=": lft >= rgt,
                     "<": lft < rgt, "<=": lft <= rgt}[op])
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip().rstrip(";")
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise QueryError("SYNTAX_ERROR", f"error at or near '{text[pos:pos + 10]}'",
                                 {"near": text[pos:pos + 10]})
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.i = 0

    def peek(self, ahead: int = 0) -> str:
        """The next token's text (lower case), without consuming it."""
        j = self.i + ahead
        return self.tokens[j][1].lower() if j < len(self.tokens) else ""

    def take(self) -> tuple[str, str]:
        """Consume and return the next token."""
        if self.i >= len(self.tokens):
            raise QueryError("SYNTAX_ERROR", "unexpected end of query", {})
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> None:
        """Consume a keyword or fail with SYNTAX_ERROR."""
        kind, text = self.take()
        if text.lower() != word:
            raise QueryError("SYNTAX_ERROR", f"expected {word} near '{text}'",
                             {"near": text, "expected": word})

    def literal(self) -> Any:
        """Consume a string, number, boolean or null literal."""
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'").replace("\\'", "'")
        if kind == "num":
            return Decimal(text) if "." in text else int(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() == "null":
            return None
        raise QueryError("INVALID_QUERY", f"invalid value near '{text}'", {"near": text})

    def condition(self) -> Predicate:
        """Parse conditions joined by and/or (left to right)."""
        left = self.term()
        while self.peek() in ("and", "or"):
            joiner = self.take()[1].lower()
            right = self.term()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right) if joiner == "and" else \
                (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self) -> Predicate:
        """Parse one comparison or a bracketed condition."""
        if self.peek() == "(":
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        kind, name = self.take()
        if kind != "word":
            raise QueryError("SYNTAX_ERROR", f"expected a field name near '{name}'", {"near": name})
        op = self.take()[1].lower()
        if op == "is":
            negate = self.peek() == "not"
            if negate:
                self.take()
            self.expect("null")
            op, value = ("is not null" if negate else "is null"), None
        elif op == "not":
            op = "not " + self.take()[1].lower()
            value = self._list() if op == "not in" else self.literal()
        elif op == "in":
            value = self._list()
        elif op == "between":
            low = self.literal()
            self.expect("and")
            value = [low, self.literal()]
        else:
            value = self.literal()

        def test(rec: dict[str, Any]) -> bool:
            return compare(op, value_of(rec, name), value)

        return test

    def _list(self) -> list[Any]:
        self.expect("(")
        values = [self.literal()]
        while self.peek() == ",":
            self.take()
            values.append(self.literal())
        self.expect(")")
        if len(values) > 50:
            raise QueryError("LIMIT_EXCEEDED", "in clause limit exceeded", {"by": "in", "limit": 50})
        return values


def parse_coql(text: str, max_limit: int = MAX_LIMIT, max_total: int = MAX_OFFSET_TOTAL) -> Query:
    """Parse `select ... from M where ... [order by ...] [limit ...]`."""
    p = _Parser(text)
    p.expect("select")
    columns = [p.take()[1]]
    while p.peek() == ",":
        p.take()
        columns.append(p.take()[1])
    if len(columns) > MAX_COLUMNS:
        raise QueryError("LIMIT_EXCEEDED", "select column limit exceeded",
                         {"by": "select", "limit": MAX_COLUMNS})
    p.expect("from")
    module = p.take()[1]
    if p.peek() != "where":
        raise QueryError("SYNTAX_ERROR", "where clause is missing in the query",
                         {"clause": "where", "near": p.peek() or module})
    p.take()
    where = p.condition()
    order: list[tuple[str, bool]] = []
    if p.peek() == "order":
        p.take()
        p.expect("by")
        while True:
            name = p.take()[1]
            desc = False
            if p.peek() in ("asc", "desc"):
                desc = p.take()[1].lower() == "desc"
            order.append((name, desc))
            if p.peek() != ",":
                break
            p.take()
    limit, offset = 200, 0
    if p.peek() == "limit":
        p.take()
        first = int(p.literal())
        if p.peek() == ",":
            p.take()
            offset, limit = first, int(p.literal())
        else:
            limit = first
            if p.peek() == "offset":
                p.take()
                offset = int(p.literal())
    if p.i != len(p.tokens):
        raise QueryError("SYNTAX_ERROR", f"error at or near '{p.peek()}'", {"near": p.peek()})
    if limit > max_limit:
        raise QueryError("LIMIT_EXCEEDED", "limit exceeded", {"by": "limit", "limit": max_limit})
    if offset + limit > max_total:
        raise QueryError("LIMIT_EXCEEDED", "offset limit exceeded", {"by": "offset", "limit": max_total})
    return Query(columns, module, where, order, limit, offset)


def parse_criteria(text: str) -> Predicate:
    """Parse Search API criteria `((Field:op:value)and(...))`; `equals` on text acts like contains."""
    pos = 0

    def group() -> Predicate:
        """Parse one bracketed criterion or sub-chain."""
        nonlocal pos
        if pos >= len(text) or text[pos] != "(":
            raise QueryError("INVALID_QUERY", "invalid criteria", {"param_name": "criteria"})
        pos += 1
        if text[pos] == "(":
            pred = chain()
        else:
            start, depth, buf = pos, 0, []
            while pos < len(text) and not (text[pos] == ")" and depth == 0):
                if text[pos] == "\\" and pos + 1 < len(text):
                    buf.append(text[pos + 1])
                    pos += 2
                    continue
                buf.append(text[pos])
                pos += 1
            del start, depth
            pred = _criterion("".join(buf))
        if pos >= len(text) or text[pos] != ")":
            raise QueryError("INVALID_QUERY", "invalid criteria", {"param_name": "criteria"})
        pos += 1
        return pred

    def chain() -> Predicate:
        """Parse groups joined by and/or."""
        nonlocal pos
        left = group()
        while text[pos:pos + 3].lower() == "and" or text[pos:pos + 2].lower() == "or":
            joiner = "and" if text[pos:pos + 3].lower() == "and" else "or"
            pos += len(joiner)
            right = group()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right) if joiner == "and" else \
                (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    pred = chain()
    if pos != len(text):
        raise QueryError("INVALID_QUERY", "invalid criteria", {"param_name": "criteria"})
    return pred


def _criterion(text: str) -> Predicate:
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise QueryError("INVALID_QUERY", "invalid criteria", {"param_name": "criteria"})
    name, op, raw = parts
    ops = {"equals": "=", "not_equal": "!=", "greater_than": ">", "greater_equal": ">=", "less_than": "<",
           "less_equal": "<=", "starts_with": "like", "in": "in", "between": "between"}
    if op not in ops:
        raise QueryError("INVALID_QUERY", f"invalid operator {op}", {"param_name": "criteria"})

    def match(rec: dict[str, Any]) -> bool:
        """Whether a record satisfies this criterion."""
        left = value_of(rec, name)
        if op == "equals" and isinstance(left, str):
            return raw.lower() in left.lower()  # Zoho's search "equals" behaves like contains
        if op == "starts_with":
            return isinstance(left, str) and left.lower().startswith(raw.lower())
        if op in ("in", "between"):
            return compare(ops[op], left, raw.split(","))
        return compare(ops[op], left, raw)

    return match
