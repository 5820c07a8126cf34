"""Progress of a sync run: the engine reports each stage; the CLI shows rich bars only on long runs."""

from __future__ import annotations

import io

from rich.console import Console

from connector.cli.progress import RunProgress
from helpers import zoho_engine


def test_engine_reports_every_stage_up_to_its_total(tmp_path: object) -> None:
    eng, _sb = zoho_engine(f"sqlite:///{tmp_path}/z.db", seed=40)
    seen: list[tuple[str, int, int | None]] = []
    eng.progress = lambda stage, done, total: seen.append((stage, done, total))
    report = eng.run()
    last = {stage: (done, total) for stage, done, total in seen}
    assert {"pull customers", "pull contracts", "pull payments", "reconcile", "write", "tasks"} <= set(last)
    for stage in ("pull customers", "pull contracts", "pull payments"):
        assert last[stage] == (report.pulled[stage.split()[1]],) * 2
    assert last["write"][0] == last["write"][1] >= report.records_written > 0
    assert last["tasks"][0] == last["tasks"][1] >= report.tasks_created
    reconcile = [done for stage, done, _total in seen if stage == "reconcile"]
    assert reconcile == sorted(reconcile) and reconcile[0] == 0


def test_bars_appear_only_after_the_delay_and_show_counts() -> None:
    now = [0.0]
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with RunProgress(console, delay=1.0, clock=lambda: now[0], transient=False) as progress:
        progress("pull customers", 100, None)
        assert progress.bars is None  # a short run shows no bars
        now[0] = 2.0
        progress("pull customers", 250, 250)
        progress("reconcile", 40, 40)
        assert progress.bars is not None
    text = buf.getvalue()
    assert "pull customers" in text and "250/250" in text and "40/40" in text
