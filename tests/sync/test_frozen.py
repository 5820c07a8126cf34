"""The database under a run on SQLite: a frozen holder, a frozen writer, a deleted file, a full disk.

Real `sync run` processes where the issue happens between processes; the test waits on events (a line
printed, a child reported stopped by waitpid), never on sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import zoho_engine
from sqlalchemy import event, select

from connector.adapters.zoho.sandbox import ZohoSandbox
from connector.cli.sync_cmd import write_config
from connector.errors import StorageFull
from connector.db.engine import make_engine
from connector.sync import tables as t

# A `sync run` of the configured connection that stops itself (SIGSTOP) at its first progress tick of
# the customers pull: between transactions ("between"), or inside a write transaction ("inside").
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from datetime import timedelta
    from sqlalchemy import text
    from connector.config import choose_database, load_settings
    from connector.db.engine import make_engine, write_transaction
    from connector.app import build_sync_engine

    cfg, mode = sys.argv[1], sys.argv[2]
    loaded = load_settings(cfg)
    db = make_engine(choose_database(None, cfg).url)
    eng = build_sync_engine(loaded, None, db, holder="frozen-worker")
    eng.heartbeat = timedelta(hours=1)  # no heartbeat while the test runs: only the frozen process matters
    stopped = []

    def progress(stage, done, total):
        if stage == "pull customers" and done and not stopped:
            stopped.append(True)
            if mode == "inside":
                with write_transaction(db) as conn:
                    conn.execute(text("UPDATE sync_locks SET heartbeat_at = heartbeat_at"))
                    print("frozen", flush=True)
                    os.kill(os.getpid(), signal.SIGSTOP)
            else:
                print("frozen", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)

    eng.progress = progress
    report = eng.run()
    print(json.dumps({"status": report.status, "reason": report.reason, "run_id": report.run_id}), flush=True)
    sys.exit(1 if report.status == "failed" else 0)
""")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")}  # the config's .env holds them


def _frozen_child(cfg: Path, mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg), mode], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "frozen", child.stderr
    _, status = os.waitpid(child.pid, os.WUNTRACED)  # returns once the child has stopped
    assert os.WIFSTOPPED(status)
    return child


def _sync_run(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", "sync", "run", "--config", str(cfg), *extra],
                          env=_env(), capture_output=True, text=True, timeout=300)


def test_a_holder_frozen_past_its_lease_stops_without_writing_when_it_wakes(tmp_path: Path) -> None:
    with ZohoSandbox(seed=150) as sb:
        write_config(tmp_path, "zoho", sandbox=sb.api_domain)
        cfg = tmp_path / "prepaid-sync.toml"
        frozen = _frozen_child(cfg, "between")
        try:
            db = make_engine(f"sqlite:///{tmp_path / 'prepaid-sync.db'}")
            with db.begin() as conn:  # the frozen holder's lease runs out
                conn.execute(t.locks.update().values(lease_until=datetime(2000, 1, 1, tzinfo=UTC)))
            heir = _sync_run(cfg, "--json")
            assert heir.returncode == 0, heir.stderr
            heir_run = json.loads(heir.stdout)["run_id"]
            with db.connect() as conn:
                before = conn.execute(select(t.cursors)).all()
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        out, err = frozen.communicate(timeout=300)
        woke = json.loads(out.strip().splitlines()[-1])
        assert frozen.returncode == 1 and woke["status"] == "failed", err
        assert "was taken over" in woke["reason"] and "stopped without writing more" in woke["reason"]
        assert "Traceback" not in err
        with db.connect() as conn:
            after = conn.execute(select(t.cursors)).all()
            status = conn.execute(select(t.runs.c.status).where(t.runs.c.id == woke["run_id"])).scalar()
        assert after == before and {r.run_id for r in after} == {heir_run}  # the woken run wrote nothing
        assert status == "failed"


def test_a_run_meeting_a_frozen_writer_exits_4_naming_it_after_a_bounded_wait(tmp_path: Path) -> None:
    with ZohoSandbox(seed=150) as sb:
        write_config(tmp_path, "zoho", sandbox=sb.api_domain)
        cfg = tmp_path / "prepaid-sync.toml"
        with cfg.open("a", encoding="utf-8") as fh:
            fh.write("\n[scheduler]\nlock_wait_seconds = 1\n")
        frozen = _frozen_child(cfg, "inside")
        try:
            refused = _sync_run(cfg)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
            frozen.communicate(timeout=300)
        assert refused.returncode == 4, refused.stderr
        assert "Traceback" not in refused.stderr and "database is locked" not in refused.stderr
        said = " ".join(refused.stderr.split())
        assert "is being synced by run 1 (worker frozen-worker, pid " in said
        assert "it has kept the database locked for over 1 s (is that process stopped or frozen?)" in said
        assert frozen.returncode == 0  # woken, the frozen run still held its lease and finished


def _on_first(stage: str, action: Any) -> Any:
    done: list[bool] = []

    def progress(name: str, _done: int, _total: int | None) -> None:
        if name == stage and not done:
            done.append(True)
            action()

    return progress


def test_a_database_file_deleted_under_a_running_sync_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    eng, _sb = zoho_engine(f"sqlite:///{path}", seed=150)
    eng.progress = _on_first("pull payments", path.unlink)
    report = eng.run()
    assert report.status == "failed"
    assert report.reason.startswith(f"the database file {path} was deleted while the run was in progress")
    assert report.records_written == 0  # nothing was written back from a ledger that is gone


def test_a_full_disk_ends_the_run_with_one_line(tmp_path: Path) -> None:
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/full.db", seed=150)
    with eng.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)

    @event.listens_for(eng.engine, "checkout")
    def no_room(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # SQLite answers SQLITE_FULL past this

    with pytest.raises(StorageFull) as info:
        eng.run()
    assert str(info.value).startswith(f"the disk holding the database sqlite:///{tmp_path}/full.db is full "
                                      "(database or disk is full); the run stopped")
    assert "\n" not in str(info.value) and info.value.exit_code == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_sync_run_on_a_full_tmpfs_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with ZohoSandbox(seed=300) as sb:
            write_config(disk, "zoho", sandbox=sb.api_domain)
            full = _sync_run(disk / "prepaid-sync.toml")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: the disk holding the database sqlite:///"), full.stderr
    assert " is full (database or disk is full); the run stopped" in errors[0]
