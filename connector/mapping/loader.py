"""Load and validate a mapping file; every error names the file, the path inside it and the reason."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from connector.errors import ConfigError
from connector.mapping import models
from connector.mapping.models import DERIVED, FLAGS, METRICS, TEMPLATE_VARS, Mapping
from connector.mapping.yaml_input import load_yaml

DEFAULTS = Path(__file__).parent / "defaults"


def _vocabulary() -> set[str]:
    words: set[str] = {*DERIVED, *FLAGS, *METRICS, *TEMPLATE_VARS}
    for obj in vars(models).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            words.update(obj.model_fields)
    for attrs in models._ATTRS.values():
        words.update(attrs - models._BASE)
    return words


def suggest(name: str, choices: set[str] | None = None) -> str:
    """' (did you mean X?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(name, sorted(_vocabulary() if choices is None else choices), n=1,
                                      cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(err: ErrorDetails) -> tuple[str, str]:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return _path(loc), f"unknown key {loc[-1]!r}{suggest(str(loc[-1]))}"
    if err["type"] == "missing":
        return _path(loc), "required key is missing"
    if err["type"] == "literal_error":
        expected = set(re.findall(r"'([^']*)'", msg))
        return _path(loc), f"{msg} (got {err.get('input')!r}){suggest(str(err.get('input')), expected)}"
    where = _path(loc)
    head = re.match(r"^([\w.\[\]]+): (.*)$", msg)
    if head and not loc:
        where, msg = head.group(1), head.group(2)
    quoted = re.search(r"unknown \w[\w -]* '([^']+)'", msg)
    if quoted:
        msg += suggest(quoted.group(1))
    return where, msg


def parse_mapping(data: Any, source: str = "<mapping>") -> Mapping:
    """Validate already-loaded YAML data; raise ConfigError naming source, path and reason."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the mapping must be a YAML mapping (key: value), got {type(data).__name__}",
            file=source)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        lines = "; ".join(f"{where}: {why}" for where, why in problems)
        first_where, first_why = problems[0]
        raise ConfigError(f"{source}: {lines}", file=source, path=first_where, reason=first_why) from None


def load_mapping(path: str | Path) -> Mapping:
    """Read a YAML mapping file and validate it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read mapping file ({exc.strerror})", file=str(file)) from None
    return parse_mapping(load_yaml(text, str(file)), str(file))


def default_mapping_path(crm: str) -> Path:
    """The shipped default mapping for a CRM kind."""
    path = DEFAULTS / f"{crm}.yaml"
    if not path.exists():
        raise ConfigError(f"no default mapping for CRM {crm!r}{suggest(crm, {'zoho', 'fxiaoke'})}", crm=crm)
    return path
