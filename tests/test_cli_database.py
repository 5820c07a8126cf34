"""Which database each command uses: one rule for all (--db, else $PREPAID_SYNC_DB, else the config's
database_url, else ./prepaid-sync.db); a command that only reads never creates one; a missing or unreachable
database is one line naming it and the fix."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from connector.cli import app
from tests.conftest import PG_URL, require_pg

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PREPAID_SYNC_DB", raising=False)
    monkeypatch.delenv("PREPAID_SYNC_CONFIG", raising=False)
    yield


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout + result.stderr


def init(folder: Path) -> Path:
    cli("init", "--crm", "zoho", "--dir", str(folder))
    return folder / "prepaid-sync.toml"


def names(text: str) -> set[str]:
    return {a["customer"] for a in json.loads(text)}


def test_every_command_reads_the_database_of_the_config(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = init(tmp_path / "shop")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cli("--config", str(cfg), "ledger", "deposit", "acme", "10.00", "--currency", "CNY", "--key", "k1")
    assert (tmp_path / "shop" / "prepaid-sync.db").exists()

    report = json.loads(runner.invoke(app, ["report", "--config", str(cfg), "--format", "json"]).stdout)
    assert [c["customer"] for c in report["customers"]] == ["acme"]
    statement = json.loads(cli("statement", "acme", "--config", str(cfg), "--format", "json"))
    assert [e["amount"] for e in statement["sections"][0]["entries"]] == ["10.00"]
    assert names(cli("--config", str(cfg), "ledger", "accounts", "--json")) == {"acme"}
    monkeypatch.setenv("PREPAID_SYNC_CONFIG", str(cfg))
    assert names(cli("ledger", "accounts", "--json")) == {"acme"}
    assert "acme" in cli("ledger", "balance", "acme")
    cli("status", "--json")
    cli("runs", "--json")
    monkeypatch.delenv("PREPAID_SYNC_CONFIG")
    monkeypatch.chdir(tmp_path / "shop")  # ./prepaid-sync.toml
    assert names(cli("ledger", "accounts", "--json")) == {"acme"}
    assert not list(elsewhere.iterdir())  # no stray database


def test_db_then_env_then_config_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init(tmp_path)
    monkeypatch.chdir(tmp_path)
    urls = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("flag", "env")}
    for name, url in urls.items():
        cli("--db", url, "ledger", "deposit", name, "1", "--currency", "CNY", "--key", name)
    cli("ledger", "deposit", "config", "1", "--currency", "CNY", "--key", "config")  # the config's database
    monkeypatch.setenv("PREPAID_SYNC_DB", urls["env"])
    assert names(cli("--db", urls["flag"], "ledger", "accounts", "--json")) == {"flag"}
    assert names(cli("ledger", "accounts", "--json")) == {"env"}
    monkeypatch.delenv("PREPAID_SYNC_DB")
    assert names(cli("ledger", "accounts", "--json")) == {"config"}
    assert "database_url in prepaid-sync.toml" in cli("db", "current")
    (tmp_path / "bare").mkdir()
    monkeypatch.chdir(tmp_path / "bare")  # no config here: ./prepaid-sync.db
    text = cli("ledger", "accounts", "--json", code=2)
    assert f"no database at {Path('prepaid-sync.db')} (the default: no --db" in text


READERS = [
    ("ledger", "balance", "acme"),
    ("ledger", "history", "acme"),
    ("ledger", "accounts"),
    ("ledger", "entry", "1"),
    ("ledger", "verify"),
    ("ledger", "import", "{csv}", "--dry-run"),
    ("report", ),
    ("report", "custody"),
    ("report", "compliance"),
    ("statement", "acme"),
    ("status", ),
    ("runs", ),
    ("runs", "show", "1"),
    ("alerts", "pending"),
    ("db", "current"),
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a))
def test_a_reading_command_never_creates_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    args: tuple[str, ...]) -> None:
    init(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("op,customer,amount,currency,key\ndeposit,acme,1,CNY,i1\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, [a.replace("{csv}", str(tmp_path / "in.csv")) for a in args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"no database at {tmp_path / 'prepaid-sync.db'} (database_url in " in lines[0]
    assert "prepaid-sync db upgrade" in lines[0] and "nothing was created" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_writing_command_says_it_created_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/ledger.db"
    text = cli("--db", url, "ledger", "deposit", "acme", "1", "--currency", "CNY", "--key", "k")
    assert f"created a new database at {tmp_path}/new/ledger.db (--db)" in text
    assert "created a new database" not in cli("--db", url, "ledger", "deposit", "acme", "1", "--currency",
                                               "CNY", "--key", "k2")


def test_init_keeps_the_database_beside_the_config(tmp_path: Path) -> None:
    cfg = init(tmp_path / "a")
    assert 'database_url = "sqlite:///prepaid-sync.db"' in cfg.read_text()
    cli("--config", str(cfg), "ledger", "deposit", "acme", "1", "--currency", "CNY", "--key", "a1")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = tmp_path / "b" / "prepaid-sync.toml"
    cli("--config", str(copy), "ledger", "deposit", "bolt", "1", "--currency", "CNY", "--key", "b1")
    assert names(cli("--config", str(cfg), "ledger", "accounts", "--json")) == {"acme"}
    assert names(cli("--config", str(copy), "ledger", "accounts", "--json")) == {"acme", "bolt"}


def _pg(database: str, *, port: int | None = None, password: str | None = None) -> str:
    url = make_url(PG_URL).set(database=database)
    if port is not None:
        url = url.set(port=port)
    if password is not None:
        url = url.set(password=password)
    return url.render_as_string(hide_password=False)


@pytest.mark.postgres
def test_postgres_missing_database_names_createdb() -> None:
    require_pg()
    url = make_url(_pg("prepaid_sync_missing_db"))
    for args in (("ledger", "accounts"), ("ledger", "deposit", "a", "1", "--currency", "CNY", "--key", "k")):
        text = cli("--db", _pg("prepaid_sync_missing_db"), *args, code=2)
        assert len(text.strip().splitlines()) == 1
        assert "PostgreSQL database 'prepaid_sync_missing_db' does not exist" in text
        assert f"createdb -h {url.host} -p {url.port} -U {url.username} prepaid_sync_missing_db" in text


def test_unreachable_postgres_is_one_line_with_the_password_masked(tmp_path: Path) -> None:
    url = _pg("prepaid", port=1, password="pa55word-secret")
    for args in (("ledger", "accounts"), ("sync", "run"), ("db", "upgrade")):
        if args[0] == "sync":
            cfg = init(tmp_path)
            args = ("sync", "run", "--config", str(cfg))
        text = cli("--db", url, *args, code=2)
        assert len(text.strip().splitlines()) == 1, text
        assert ("cannot connect to PostgreSQL at 127.0.0.1:1" in text
                and "is the PostgreSQL server running" in text)
        assert "pa55word-secret" not in text and "***" in text


@pytest.mark.postgres
def test_postgres_without_tables_is_not_set_up_by_a_reading_command(pg_url: str) -> None:
    text = cli("--db", pg_url, "ledger", "accounts", code=2)
    assert "has no prepaid-sync tables; nothing was created" in text
    assert cli("--db", pg_url, "db", "current").startswith("empty")
    cli("--db", pg_url, "db", "upgrade")
    assert names(cli("--db", pg_url, "ledger", "accounts", "--json")) == set()
