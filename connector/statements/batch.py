"""`statement --all`: one file per customer, read and rendered by several processes when there are many.

Each process takes a contiguous run of customers (a customer's accounts stay together), reads them in
chunks with its own database connection and writes their files; the statements are the ones a single
process would write, byte for byte. Processes are forked (where the platform can fork), so they share
the loader, the renderer and the list of accounts without pickling them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.statements.builder import CustomerStatement, StatementLoader

PER_PROCESS = 5000  # fewer accounts than this per process: starting one costs more than it saves
MAX_JOBS = 4


@dataclass(frozen=True)
class _Task:
    loader: StatementLoader
    parts: list[Sequence[Any]]
    out_dir: Path
    render: Callable[[CustomerStatement], str]
    name: Callable[[str], str]


_TASK: _Task | None = None  # what forked workers inherit


def default_jobs(accounts: int) -> int:
    """Processes for `accounts` statements: one per core (at most MAX_JOBS), one per PER_PROCESS accounts."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_JOBS, accounts // PER_PROCESS))


def split(accounts: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """`accounts` (in customer order) cut into at most `parts` contiguous runs, never inside a customer."""
    out: list[Sequence[Any]] = []
    start, size = 0, -(-len(accounts) // max(1, parts))
    while start < len(accounts):
        end = min(len(accounts), start + size)
        while 0 < end < len(accounts) and accounts[end].customer_key == accounts[end - 1].customer_key:
            end += 1
        out.append(accounts[start:end])
        start = end
    return out


def _write(task: _Task, part: Sequence[Any]) -> int:
    count = 0
    for st in task.loader.statements(part):
        (task.out_dir / task.name(st.customer)).write_text(task.render(st), encoding="utf-8")
        count += 1
    return count


def _work(index: int) -> int:
    assert _TASK is not None
    for engine in {id(e): e for e in (_TASK.loader.engine, getattr(_TASK.loader.attributes, "engine", None))
                   if e is not None}.values():
        engine.dispose(close=False)  # the parent's pooled connections are not this process's to use
    return _write(_TASK, _TASK.parts[index])


def write_all(loader: StatementLoader, out_dir: Path, render: Callable[[CustomerStatement], str],
              name: Callable[[str], str], jobs: int | None = None) -> int:
    """Write the statement of every customer with a balance into `out_dir`; returns how many.

    `jobs`: processes to use (None: `default_jobs`)."""
    global _TASK
    accounts = loader.accounts_with_balance()
    jobs = default_jobs(len(accounts)) if jobs is None else max(1, jobs)
    task = _Task(loader, split(accounts, jobs), out_dir, render, name)
    if len(task.parts) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return sum(_write(task, part) for part in task.parts)
    _TASK = task
    try:
        with multiprocessing.get_context("fork").Pool(len(task.parts)) as pool:
            return sum(pool.map(_work, range(len(task.parts))))
    finally:
        _TASK = None
