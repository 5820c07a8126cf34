"""Logging: text or JSON lines, every line stamped with its run and connection, secrets masked.

`setup_logging()` installs one handler on the root logger (calling it again reconfigures that handler).
`run_context(run_id=..., connection=...)` marks the lines logged inside it; it rests on `contextvars`,
so nested contexts restore the outer one and threads never see each other's run. A new thread starts
with an empty context: hand it `carry(fn)` to keep the run's stamp. `bind_worker(id)` stamps the
process's worker id on every line.

The `RunContextFilter` on that handler masks credentials (`connector.redact.text`) in the formatted
message, in `extra=` fields and in exception text, so a token passed as a log argument never reaches a
log file. Add it to any other handler that should get the same treatment.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any, Literal, TypeVar

from connector import redact

LogFormat = Literal["text", "json"]
FORMAT_ENV = "PREPAID_SYNC_LOG_FORMAT"
LEVEL_ENV = "PREPAID_SYNC_LOG_LEVEL"
R = TypeVar("R")
V = TypeVar("V")

_run_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("prepaid_sync_run_id", default=None)
_connection: contextvars.ContextVar[str | None] = contextvars.ContextVar("prepaid_sync_connection",
                                                                         default=None)
_worker: contextvars.ContextVar[str | None] = contextvars.ContextVar("prepaid_sync_worker", default=None)
_process_worker: str | None = None
_handler: logging.Handler | None = None

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "run_id", "connection", "worker", "taskName", "_redacted",
    "color_message"}  # uvicorn's coloured copy of its own message


@contextmanager
def run_context(*, run_id: int | None = None, connection: str | None = None,
                worker: str | None = None) -> Iterator[None]:
    """Stamp log lines inside the block with this run and connection (unset values keep the outer ones)."""
    undo = (_set(_run_id, run_id), _set(_connection, connection), _set(_worker, worker))
    try:
        yield
    finally:
        for reset in reversed(undo):
            reset()


def _set(var: contextvars.ContextVar[V | None], value: V | None) -> Callable[[], None]:
    """Set `var` to `value` unless that is None; the returned call puts the old value back."""
    if value is None:
        return lambda: None
    token = var.set(value)
    return lambda: var.reset(token)


def current() -> dict[str, Any]:
    """The stamp lines logged here would get: run_id, connection, worker (None when unset)."""
    return {
        "run_id": _run_id.get(), "connection": _connection.get(), "worker": _worker.get() or _process_worker
    }


def bind_worker(worker_id: str | None) -> None:
    """Stamp every line of this process (all threads) with the scheduler worker's id; None unbinds."""
    global _process_worker
    _process_worker = worker_id


def carry(fn: Callable[..., R]) -> Callable[..., R]:
    """`fn` wrapped to run in a copy of the caller's context: a thread started on it keeps the run stamp."""
    captured = contextvars.copy_context()

    def call(*args: Any, **kwargs: Any) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return call


def _mask_lines(value: str) -> str:
    # Line by line, so a long traceback is masked without being cut at redact.MAX_BODY.
    return "\n".join(redact.text(line) for line in value.split("\n"))


class RunContextFilter(logging.Filter):
    """Stamps run_id, connection and worker on each record, and masks secrets in its text (never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp and redact `record` in place; always True."""
        stamp = current()
        for key, value in stamp.items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both, masked
            message = f"{record.msg} {record.args!r}"
        record.msg = redact.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _mask_lines(record.exc_text)
        if record.stack_info:
            record.stack_info = _mask_lines(record.stack_info)
        for key in extras(record):
            value = getattr(record, key)
            setattr(record, key, redact.MASK if redact.is_secret_name(key) else redact.data(value))
        record._redacted = True
        return True


def extras(record: logging.LogRecord) -> list[str]:
    """Names of the fields a caller added with `extra=`."""
    return [k for k in record.__dict__ if k not in _STANDARD and not k.startswith("_")]


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, run_id, connection, [worker], extras, [exc]."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {"ts": _utc(record.created), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage(), "run_id": getattr(record, "run_id", None),
                               "connection": getattr(record, "connection", None)}
        worker = getattr(record, "worker", None)
        if worker:
            doc["worker"] = worker
        for key in extras(record):
            doc.setdefault(key, getattr(record, key))
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            doc["exc"] = exc
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-01-15T09:00:00.000Z WARNING connector.http [acme run=12] message key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of text (plus the traceback, if any)."""
        run_id, worker = getattr(record, "run_id", None), getattr(record, "worker", None)
        where = " ".join(p for p in (getattr(record, "connection", None) or "",
                                     f"run={run_id}" if run_id else "",
                                     f"worker={worker}" if worker else "") if p)
        line = f"{_utc(record.created)} {record.levelname} {record.name}"
        line += f" [{where}] " if where else " "
        line += record.getMessage()
        line += "".join(f" {k}={getattr(record, k)}" for k in extras(record))
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            line += "\n" + exc
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    # Looks sys.stderr up on every line, so a swapped stderr (test runners, CliRunner) is followed.
    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(fmt: str = "text", level: str | int = "INFO",
                  stream: IO[str] | None = None) -> logging.Handler:
    """Send log lines to `stream` (default: the current stderr) as text or JSON lines; idempotent.

    Sets the `connector` logger to `level`; other libraries keep the root level (warnings and worse).
    Returns the handler (the same one on every call).
    """
    global _handler
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    if isinstance(level, str):
        if level.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
        level = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonLinesFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    logging.getLogger("connector").setLevel(level)
    _handler = handler
    return handler


def is_configured() -> bool:
    """True once `setup_logging` ran in this process."""
    return _handler is not None


def reset_logging() -> None:
    """Remove the handler `setup_logging` installed (tests)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    logging.getLogger("connector").setLevel(logging.NOTSET)


def guard_last_resort() -> None:
    """Mask secrets in the warnings Python prints when logging was never set up (`logging.lastResort`)."""
    last = logging.lastResort
    if last is not None and not any(isinstance(f, RunContextFilter) for f in last.filters):
        last.addFilter(RunContextFilter())
