"""`prepaid-sync.toml`: database URL and named CRM connections; secrets only by env-var name (+ local .env).

`choose_database` is the one rule for which database a command uses.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connector.db.engine import DEFAULT_URL as DEFAULT_DB
from connector.db.engine import ENV_VAR as DB_ENV
from connector.errors import ConfigError, InvalidInput
from connector.mapping.loader import suggest
from connector.schedule_spec import parse_schedule
from connector.timeutil import zone

CONFIG_NAME = "prepaid-sync.toml"
CONFIG_ENV = "PREPAID_SYNC_CONFIG"
CONFIG_DB = "sqlite:///prepaid-sync.db"  # a config file without database_url: beside the config file
ZOHO_SECRETS = {"client_id": "ZOHO_CLIENT_ID", "client_secret": "ZOHO_CLIENT_SECRET",
                "refresh_token": "ZOHO_REFRESH_TOKEN"}
FXIAOKE_SECRETS = {"app_id": "FXIAOKE_APP_ID", "app_secret": "FXIAOKE_APP_SECRET",
                   "permanent_code": "FXIAOKE_PERMANENT_CODE"}


class MassChangeGuard(BaseModel):
    """`[connections.NAME.mass_change_guard]`: the share of customers, open flags and open CRM tasks one run
    may change before it is held for a person (`sync run --allow-mass-change`), and when that applies.

    The defaults suit an established connection synced every few minutes to a day: such a run writes the
    customers who paid or consumed since the last one and clears flags one customer at a time, so a run
    that clears a quarter of all open flags or closes a quarter of the open tasks at once is what a broken
    mapping or a bulk mistake in the CRM looks like. Field writes get more room (half the customers) because a
    daily consumption feed legitimately moves many balances. The guard never holds the first sync of a
    connection (nothing written before), nor a kind of change seen fewer than `min_count` times."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="false: never hold a run (every run may change anything)")
    max_customers_changed_pct: int = Field(
        default=50, ge=0, le=100, description="most customers whose "
        "connector-owned fields one run may write, % of the live customers")
    max_flags_cleared_pct: int = Field(
        default=25, ge=0, le=100, description="most open flags one run may clear, "
        "% of the open flags (event flags, which clear by age, are not counted)")
    max_tasks_closed_pct: int = Field(default=25, ge=0, le=100, description="most open CRM tasks one run may "
                                      "close, % of the open tasks the connector opened")
    min_count: int = Field(default=10, ge=1, description="fewer changes of a kind than this never hold a run "
                           "(a small org would otherwise trip a share with two customers)")


class Connection(BaseModel):
    """One CRM org: kind, mapping file, endpoints, env-var names of its secrets, schedule, knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crm: Literal["zoho", "fxiaoke"]
    mapping: str
    data_center: str = "us"
    accounts_url: str | None = None
    api_domain: str | None = None
    base_url: str | None = None
    open_user_id: str | None = None
    secrets: dict[str, str] = Field(default_factory=dict,
                                    description="secret name -> environment variable name")
    schedule: str | None = Field(
        default=None, description="when `prepaid-sync schedule` runs it: 'every 15 minutes' "
        "or a five-field cron such as '*/15 8-20 * * 1-5'; none = not scheduled")
    timezone: str | None = Field(default=None, description="zone of the cron and of the API budget's day "
                                 "(e.g. Asia/Shanghai); default [scheduler].timezone, else the machine's")
    misfire_grace_seconds: int = Field(
        default=600, ge=1, description="a run due longer ago than this is skipped "
        "(and counted as missed) instead of started late")
    daily_api_budget: int | None = Field(default=None, ge=1, description="most API units a day may spend; "
                                         "a run stops cleanly before it")
    budget_unit: Literal["calls", "credits"] | None = Field(
        default=None, description="what the budget counts; "
        "default credits on Zoho, calls on Fxiaoke")
    overlap_seconds: int = Field(default=120, ge=1)
    deletion_check_minutes: int = Field(
        default=60, ge=0, description="Zoho: read `/deleted` at most this often "
        "per stream (deletions are noticed within it); 0 = every run")
    retry_attempts: int = Field(default=5, ge=1, le=20)
    mass_change_guard: MassChangeGuard = Field(default_factory=MassChangeGuard)

    @model_validator(mode="after")
    def _secrets(self) -> Connection:
        wanted = ZOHO_SECRETS if self.crm == "zoho" else FXIAOKE_SECRETS
        for key in self.secrets:
            if key not in wanted:
                raise ValueError(f"secrets: unknown secret {key!r}{suggest(key, set(wanted))}")
        if self.crm == "fxiaoke" and not self.base_url:
            raise ValueError("base_url is required for an fxiaoke connection")
        if self.timezone is not None:
            check_timezone(self.timezone)
        if self.schedule is not None:
            parse_schedule(self.schedule)
        return self

    def unit(self) -> str:
        """What `daily_api_budget` counts."""
        return self.budget_unit or ("credits" if self.crm == "zoho" else "calls")

    def env_names(self) -> dict[str, str]:
        """Secret name -> environment variable name, defaults filled in."""
        return {**(ZOHO_SECRETS if self.crm == "zoho" else FXIAOKE_SECRETS), **self.secrets}


def check_timezone(name: str) -> None:
    """Raise ValueError (what pydantic reports) unless `name` is an IANA zone this machine knows."""
    try:
        zone(name)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class SchedulerSettings(BaseModel):
    """`[scheduler]`: how `prepaid-sync schedule` workers share connections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = Field(default=None,
                                 description="default zone for every connection; else the machine's")
    lease_seconds: int = Field(
        default=60, ge=5, description="a run's lease; a holder that stops heart-beating "
        "for this long is taken over")
    heartbeat_seconds: int = Field(default=15, ge=1)
    poll_seconds: int = Field(default=5, ge=1,
                              description="how often a worker looks for due or orphaned runs")
    shutdown_seconds: int = Field(
        default=60, ge=1, description="after SIGTERM, how long the current run may take "
        "to finish its batch before the worker gives up waiting")
    lock_wait_seconds: int = Field(
        default=10, ge=1, description="SQLite: how long a starting run waits for another "
        "process's unfinished write before it exits 4 naming the holder")

    @model_validator(mode="after")
    def _zone(self) -> SchedulerSettings:
        if self.timezone is not None:
            check_timezone(self.timezone)
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds")
        return self


class Settings(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(default=CONFIG_DB, description="a relative SQLite path is taken from this "
                              "file's folder")
    default_connection: str | None = None
    connections: dict[str, Connection] = Field(min_length=1)
    compliance: dict[str, Any] = Field(default_factory=dict, description="read and checked by "
                                       "connector.compliance.rules.load_rules")
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    alerts: dict[str, Any] = Field(default_factory=dict, description="read and checked by "
                                   "connector.ops.alerts.config.load_alerts")
    log_format: Literal["text", "json"] = "text"

    def zone(self, conn: Connection) -> str | None:
        """The connection's time zone name (None = the machine's)."""
        return conn.timezone or self.scheduler.timezone

    def connection(self, name: str | None) -> tuple[str, Connection]:
        """The named (or default, or only) connection."""
        pick = name or self.default_connection or (next(iter(self.connections))
                                                   if len(self.connections) == 1 else None)
        if pick is None:
            raise ConfigError(
                f"several connections ({', '.join(self.connections)}); choose one with --connection",
                field="connection")
        if pick not in self.connections:
            raise ConfigError(f"no connection named {pick!r}{suggest(pick, set(self.connections))}; "
                              f"have {', '.join(self.connections)}", field="connection")
        return pick, self.connections[pick]


class LoadedSettings(BaseModel):
    """Settings plus where they came from (mapping paths resolve against the config's folder)."""

    settings: Settings
    path: Path

    def mapping_path(self, conn: Connection) -> Path:
        """The connection's mapping file, relative paths taken from the config file's folder."""
        p = Path(conn.mapping)
        return p if p.is_absolute() else self.path.parent / p


def find_config(explicit: str | Path | None = None) -> Path:
    """`--config`, else $PREPAID_SYNC_CONFIG, else ./prepaid-sync.toml."""
    raw = explicit or os.environ.get(CONFIG_ENV) or CONFIG_NAME
    path = Path(raw)
    if not path.exists():
        raise ConfigError(f"{path}: no config file; run `prepaid-sync init` to write one", file=str(path))
    return path


def locate_config(explicit: str | Path | None = None) -> Path | None:
    """The config file in force: `--config` or $PREPAID_SYNC_CONFIG (which must exist), else
    ./prepaid-sync.toml when there is one, else None."""
    if explicit or os.environ.get(CONFIG_ENV):
        return find_config(explicit)
    return Path(CONFIG_NAME) if Path(CONFIG_NAME).is_file() else None


@dataclass(frozen=True)
class DatabaseChoice:
    """The database a command uses, and what chose it (for messages)."""

    url: str
    source: str


def choose_database(db: str | None, config: str | Path | None = None) -> DatabaseChoice:
    """The one rule for every command: `--db`, else $PREPAID_SYNC_DB, else the config file's `database_url`
    (a relative SQLite path is taken from the config file's folder), else sqlite:///./prepaid-sync.db.

    The config file is `--config`, else $PREPAID_SYNC_CONFIG, else ./prepaid-sync.toml; the .env beside it
    counts as environment, as it does for secrets."""
    if db:
        return DatabaseChoice(db, "--db")
    path = locate_config(config)
    if path is not None:
        load_env(path.parent)
    if os.environ.get(DB_ENV):
        return DatabaseChoice(os.environ[DB_ENV], f"${DB_ENV}")
    if path is None:
        return DatabaseChoice(DEFAULT_DB, f"the default: no --db, ${DB_ENV} or {CONFIG_NAME}")
    value = _read_toml(path).get("database_url", CONFIG_DB)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: database_url must be a database URL such as {CONFIG_DB!r}",
                          file=str(path))
    return DatabaseChoice(beside(value, path.resolve().parent), f"database_url in {path}")


def beside(url: str, folder: Path) -> str:
    """`url` with a relative SQLite file path taken from `folder` (other URLs unchanged)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # an invalid URL is reported, with its reason, where it is opened
        return url
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = Path(parsed.database).expanduser()
    if path.is_absolute():
        return url
    return parsed.set(database=os.path.normpath(folder / path)).render_as_string(hide_password=False)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", file=str(path)) from None
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise ConfigError(
            f"{path}: nested too deeply to read; a config file needs only a few levels, so look for "
            "unbalanced or runaway brackets", file=str(path)) from None


def load_env(folder: Path) -> None:
    """Read `<folder>/.env` into the environment without overriding variables already set."""
    env_file = folder / ".env"
    if env_file.exists():
        for key, value in dotenv_values(env_file).items():
            if value is not None and key not in os.environ:
                os.environ[key] = value


def load_settings(explicit: str | Path | None = None) -> LoadedSettings:
    """Parse and validate the config file (and load the .env beside it)."""
    path = find_config(explicit)
    data = _read_toml(path)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            why = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                known = set(Connection.model_fields) | set(Settings.model_fields) | set(
                    MassChangeGuard.model_fields)
                why = f"unknown key{suggest(str(err['loc'][-1]), known)}"
            parts.append(f"{where}: {why}")
        raise ConfigError(f"{path}: " + "; ".join(parts), file=str(path)) from None
    load_env(path.parent)
    return LoadedSettings(settings=settings, path=path.resolve())


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(settings: Settings) -> str:
    """TOML text for `settings` (what `init` writes)."""
    lines = ["# prepaid-sync configuration. Secrets are never stored here: each `secrets` entry names the",
             "# environment variable (or .env entry beside this file) that holds the secret.",
             f"database_url = {_q(settings.database_url)}"]
    if settings.default_connection:
        lines.append(f"default_connection = {_q(settings.default_connection)}")
    for name, conn in settings.connections.items():
        lines += ["", f"[connections.{name}]"]
        for key, value in conn.model_dump(exclude={"secrets", "mass_change_guard"},
                                          exclude_none=True).items():
            lines.append(f"{key} = {_q(value) if isinstance(value, str) else value}")
        lines += ["", f"[connections.{name}.secrets]"]
        lines += [f"{k} = {_q(v)}" for k, v in conn.env_names().items()]
        guard = conn.mass_change_guard.model_dump(exclude_defaults=True)
        if guard:
            lines += ["", f"[connections.{name}.mass_change_guard]"]
            lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in guard.items()]
    return "\n".join(lines) + "\n"
