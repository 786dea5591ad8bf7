"""A site's agent in the background: started detached, stopped (SIGTERM, then its drain),
told to reload settings.yml (SIGHUP), and reported on with the site's launcher sessions.

The agent process itself keeps the pid file (``site.pidfile``); these functions read it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from balsam_mq.domain import utcnow
from balsam_mq.errors import AgentError
from balsam_mq.launcher.config import parse_launcher_settings
from balsam_mq.site.config import SiteConfig, load_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.pidfile import (
    AgentFound,
    AgentRecord,
    Liveness,
    find_agent,
    process_alive,
    remove_stale,
)
from balsam_mq.site.sections import check_sections
from balsam_mq.store import Store

POLL_S = 0.1
OUTPUT_FILE = "agent.out"  # the background agent's stdout and stderr, in logs/
SILENT_BEATS = 3  # a launcher session is silent after this many missed heartbeats


@dataclass(frozen=True)
class Started:
    record: AgentRecord
    stale: AgentFound | None  # a stale pid file removed first


def start_agent(site_dir: SiteDirectory, config: SiteConfig, *, timeout: float) -> Started:
    """Start the site's agent in a session of its own, its output in ``logs/agent.out``,
    and wait until it runs; refused while another agent holds the pid file.

    Example::

        started = start_agent(*SiteDirectory.open(path), timeout=60)
    """
    check_sections(config, source=str(site_dir.settings_file))
    found = find_agent(site_dir.pid_file)
    _refuse_live(found, config)
    stale = None
    if found.liveness is Liveness.STALE:
        remove_stale(found)
        stale = found
    site_dir.logs.mkdir(parents=True, exist_ok=True)
    output = site_dir.logs / OUTPUT_FILE
    argv = [sys.executable, "-m", "balsam_mq.cli", "site", "agent", "--exclusive"]
    pid = os.posix_spawn(
        sys.executable,
        [*argv, str(site_dir.path)],
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(output), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # no terminal's signals reach it; it outlives this command
    )
    deadline = time.monotonic() + timeout
    while True:
        code = _exit_code(pid)
        if code is not None:
            raise AgentError(
                f"the agent of site {config.name!r} exited as it started (exit code {code}): "
                f"{_last_line(output)} (see {output})"
            )
        found = find_agent(site_dir.pid_file)
        if found.record is not None and found.record.pid == pid:
            if found.liveness is Liveness.RUNNING:
                return Started(found.record, stale)
        if time.monotonic() > deadline:
            raise AgentError(
                f"the agent of site {config.name!r} (pid {pid}) is not running after "
                f"{timeout:g} s; it goes on starting in the background (see {site_dir.agent_log})"
            )
        time.sleep(POLL_S)


def stop_agent(site_dir: SiteDirectory, *, timeout: float) -> AgentFound:
    """SIGTERM the site's agent and wait for its drain to end (the pid file is gone
    afterwards); what the pid file said (``NOT_RUNNING`` or ``STALE``: nothing to stop).
    settings.yml is not read: an agent is stopped even when its file has gone bad."""
    name = site_dir.name()
    found = find_agent(site_dir.pid_file)
    if found.liveness is Liveness.ELSEWHERE:
        raise AgentError(_elsewhere(found, name, "stop it there"))
    if found.liveness is Liveness.STALE:
        remove_stale(found)
    if not found.alive or found.record is None:
        return found
    pid = found.record.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        _exit_code(pid)  # reap it if it is our child (started by this process)
        if not process_alive(pid, found.record.proc_start):
            break
        if time.monotonic() > deadline:
            raise AgentError(
                f"the agent of site {name!r} (pid {pid}) got SIGTERM and is still "
                f"draining after {timeout:g} s: it stops once its batches are committed or "
                f"given back (see {site_dir.agent_log}); run stop again to wait longer, or "
                f"kill -KILL {pid}"
            )
        time.sleep(POLL_S)
    after = find_agent(site_dir.pid_file)
    if after.liveness is Liveness.STALE and after.record == found.record:
        remove_stale(after)  # an agent that could not remove its own (killed meanwhile)
    return found


def reload_agent(site_dir: SiteDirectory) -> AgentRecord:
    """Check settings.yml whole, then SIGHUP the site's agent to reload it; a malformed
    file is refused here (:class:`ConfigError` naming the key) and nothing is sent, and
    so is a site with no agent running (:class:`AgentError`)."""
    record = reload_if_running(site_dir)
    if record is None:
        raise AgentError(
            f"no agent of site {site_dir.name()!r} runs: nothing to reload "
            "(an agent reads settings.yml when it starts)"
        )
    return record


def reload_if_running(site_dir: SiteDirectory) -> AgentRecord | None:
    """:func:`reload_agent`, but ``None`` when no agent of the site runs (nothing to tell:
    the next one reads settings.yml as it starts). An agent on another host is an
    :class:`AgentError`, as is a malformed file a :class:`ConfigError`: nothing is sent."""
    config = load_config(site_dir.settings_file)
    check_sections(config, source=str(site_dir.settings_file))
    found = find_agent(site_dir.pid_file)
    if found.liveness is Liveness.ELSEWHERE:
        raise AgentError(_elsewhere(found, config.name, "send it SIGHUP there"))
    if not found.alive or found.record is None:
        return None
    os.kill(found.record.pid, signal.SIGHUP)
    return found.record


# --- launcher sessions --------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStatus:
    """A launcher session the ``sessions`` collection holds as running."""

    id: int
    alive: bool  # heartbeats on time (silent: missed SILENT_BEATS of them)
    host: str
    pid: int
    batch_job_id: int | None
    since: datetime
    heartbeat: datetime
    running_jobs: int


async def launcher_sessions(
    store: Store, site_id: int, config: SiteConfig, *, now: datetime | None = None
) -> list[SessionStatus]:
    """The site's running launcher sessions, alive or silent, with their RUNNING jobs."""
    beat = parse_launcher_settings(config.section("launcher")).heartbeat_s
    silent = (now or utcnow()) - timedelta(seconds=SILENT_BEATS * beat)
    sessions = await store.sessions.running(site_id)
    counts = await store.jobs.running_counts([s.id for s in sessions if s.id is not None])
    return [
        SessionStatus(
            id=s.id,
            alive=s.heartbeat >= silent,
            host=s.hostname,
            pid=s.pid,
            batch_job_id=s.batch_job_id,
            since=s.created_at,
            heartbeat=s.heartbeat,
            running_jobs=counts.get(s.id, 0),
        )
        for s in sessions
        if s.id is not None
    ]


# --- helpers ------------------------------------------------------------------------------


def _refuse_live(found: AgentFound, config: SiteConfig) -> None:
    if found.liveness is Liveness.ELSEWHERE:
        raise AgentError(
            _elsewhere(found, config.name, f"stop it there, or remove {found.path} if it is gone")
        )
    if found.alive and found.record is not None:
        raise AgentError(
            f"the agent of site {config.name!r} already runs (pid {found.record.pid}, since "
            f"{found.record.started_at.astimezone():%Y-%m-%d %H:%M:%S}; {found.path})"
        )


def _elsewhere(found: AgentFound, name: str, advice: str) -> str:
    assert found.record is not None
    return (
        f"the agent of site {name!r} runs on host {found.record.host} "
        f"(pid {found.record.pid}), not this one: {advice}"
    )


def _exit_code(pid: int) -> int | None:
    """The exit code of our child ``pid`` once it has ended (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, or reaped already
        return None
    return os.waitstatus_to_exitcode(status) if done == pid else None


def _last_line(path: os.PathLike[str]) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"
