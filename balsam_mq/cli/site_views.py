"""What `balsam-mq site status` shows: the agent its pid file names and the site's launcher
sessions, as lines and a table, or as JSON."""

from __future__ import annotations

from typing import Any

import typer
from pymongo.errors import PyMongoError
from rich.text import Text

from balsam_mq.cli.output import show_table, when
from balsam_mq.domain import utcnow
from balsam_mq.errors import BalsamError, ConfigError
from balsam_mq.settings import load_settings
from balsam_mq.site.config import SiteConfig
from balsam_mq.site.control import SessionStatus, launcher_sessions
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.pidfile import AgentFound, Liveness
from balsam_mq.store import open_store


async def sessions_of(site_dir: SiteDirectory) -> tuple[list[SessionStatus] | None, str | None]:
    """The site's launcher sessions, or why they could not be read (a bad settings.yml,
    MongoDB away)."""
    try:
        config = _config(site_dir)
        settings = load_settings()
        async with open_store(
            settings.mongodb_url, settings.db, init_schema=False, timeout_ms=5000
        ) as store:
            assert config.site_id is not None  # _config checked it
            return await launcher_sessions(store, config.site_id, config), None
    except (BalsamError, PyMongoError) as exc:
        return None, str(exc)


def pid_of(found: AgentFound) -> str:
    record = found.record
    return "?" if record is None else f"pid {record.pid} on {record.host}"


def status_json(
    site_dir: SiteDirectory,
    found: AgentFound,
    sessions: list[SessionStatus] | None,
    problem: str | None,
) -> dict[str, Any]:
    record = found.record
    try:
        site_id = _config(site_dir).site_id
    except ConfigError:
        site_id = None
    return {
        "site": {"id": site_id, "name": site_dir.name(), "path": str(site_dir.path)},
        "agent": {
            "state": found.liveness.value,
            "pid": record.pid if record else None,
            "host": record.host if record else None,
            "started_at": record.started_at if record else None,
            "pid_file": str(site_dir.pid_file),
            "log": str(site_dir.agent_log),
        },
        "sessions": None if sessions is None else [_session_json(s) for s in sessions],
        "sessions_error": problem,
    }


def _session_json(s: SessionStatus) -> dict[str, Any]:
    return {
        "id": s.id,
        "state": "alive" if s.alive else "silent",
        "host": s.host,
        "pid": s.pid,
        "batch_job_id": s.batch_job_id,
        "since": s.since,
        "heartbeat": s.heartbeat,
        "running_jobs": s.running_jobs,
    }


def show_status(
    site_dir: SiteDirectory,
    found: AgentFound,
    sessions: list[SessionStatus] | None,
    problem: str | None,
) -> None:
    record = found.record
    described = {
        Liveness.RUNNING: f"running, {pid_of(found)}",
        Liveness.STARTING: f"starting, {pid_of(found)}",
        Liveness.NOT_RUNNING: "not running",
        Liveness.STALE: f"not running (stale pid file: {pid_of(found)} is gone)",
        Liveness.ELSEWHERE: f"{pid_of(found)}: another host, not checkable from here",
    }[found.liveness]
    if record is not None and found.alive:
        described += f", since {when(record.started_at)}"
    typer.echo(f"agent: {described}")
    typer.echo(f"log: {site_dir.agent_log}")
    if sessions is None:
        typer.echo(f"launcher sessions: unknown ({problem})")
        return
    alive = sum(s.alive for s in sessions)
    typer.echo(f"launcher sessions: {len(sessions)} ({alive} alive)")
    if not sessions:
        return
    now = utcnow()
    show_table(
        ["session", "state", "host", "pid", "batch job", "since", "last heartbeat", "running"],
        [
            [
                str(s.id),
                Text("alive", style="green") if s.alive else Text("silent", style="yellow"),
                s.host,
                str(s.pid),
                "-" if s.batch_job_id is None else str(s.batch_job_id),
                when(s.since),
                f"{max(0.0, (now - s.heartbeat).total_seconds()):.0f} s ago",
                str(s.running_jobs),
            ]
            for s in sessions
        ],
    )


def _config(site_dir: SiteDirectory) -> SiteConfig:
    config = site_dir.config()
    if config.site_id is None:
        raise ConfigError(f"{site_dir.settings_file}: site_id is missing")
    return config
