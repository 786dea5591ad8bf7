"""Running a site agent as a process: its pid file and rotated log in the site directory,
stop on SIGINT/SIGTERM, reload settings.yml on SIGHUP."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from balsam_mq import heap
from balsam_mq.broker import build_topology, open_amqp
from balsam_mq.broker.connection import quiet_reconnection_logs
from balsam_mq.errors import AgentError, ConfigError
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.processors.reload import plan_reload
from balsam_mq.settings import Settings
from balsam_mq.site.config import LogSettings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.site.logs import apply_rotation, rotating_handler
from balsam_mq.site.pidfile import PidFileClaim, claim, find_agent
from balsam_mq.site.sections import check_sections
from balsam_mq.store import open_store

log = logging.getLogger("balsam_mq.agent")


def configure_logging(path: Path, level: str, settings: LogSettings) -> RotatingFileHandler:
    handler = rotating_handler(path, settings)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    quiet_reconnection_logs()
    return handler


async def run_agent(
    settings: Settings, path: Path, *, grace: float = 10.0, exclusive: bool = False
) -> None:
    """Run the agent of the site at ``path`` until SIGINT or SIGTERM; SIGHUP reloads its
    settings.yml (``processors.reload``).

    On a stop signal consumers stop taking messages and the batches in hand commit within
    ``grace`` seconds; anything not committed by then stays unacknowledged and is
    redelivered to the next agent, never half-applied (each batch is one transaction).

    The agent takes the site's pid file (``site.pidfile``) and logs to ``logs/agent.log``.
    If another live agent holds the pid file, this one refuses to run when ``exclusive``
    (what `site start` asks); otherwise it runs alongside (several agents may serve a
    site) and logs to ``logs/agent-<host>-<pid>.log``, so no two processes rotate one file.
    """
    site_dir, config = SiteDirectory.open(path)
    check_sections(config, source=str(site_dir.settings_file))
    assert config.site_id is not None
    site_dir.logs.mkdir(parents=True, exist_ok=True)
    held = claim(site_dir.pid_file)
    holder = ""
    if held is None:
        found = find_agent(site_dir.pid_file)
        holder = f"pid {found.record.pid} on {found.record.host}" if found.record else "?"
        if exclusive:
            raise AgentError(
                f"an agent of site {config.name!r} already runs ({holder}; {site_dir.pid_file})"
            )
    log_file = (
        site_dir.agent_log
        if held is not None
        else site_dir.logs / f"agent-{socket.gethostname()}-{os.getpid()}.log"
    )
    handler = configure_logging(log_file, settings.log_level, config.logs)
    try:
        if held is None:
            log.info("another agent of the site holds its pid file (%s): running alongside", holder)
        # the signals are ours from here on: a SIGHUP while connecting must not end us
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with (
                open_store(settings.mongodb_url, settings.db) as store,
                open_amqp(settings.amqp_url) as amqp,
            ):
                agent = SiteAgent(
                    store,
                    amqp,
                    build_topology(settings.namespace, quorum=settings.quorum),
                    await store.sites.get(config.site_id),
                    site_dir,
                    config,
                    prefetch=settings.prefetch,
                    window=settings.batch_window_ms / 1000,
                    max_attempts=settings.max_attempts,
                    settings=settings,
                )
                heap.settle()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_on_signals, signals, agent, handler, grace, tg)
                    if held is not None:
                        tg.start_soon(_mark_running, agent, held)
                    await agent.run()
                    tg.cancel_scope.cancel()
    finally:
        if held is not None:
            held.release()
        logging.getLogger().removeHandler(handler)
        handler.close()


async def _on_signals(
    signals: AsyncIterator[int],
    agent: SiteAgent,
    handler: RotatingFileHandler,
    grace: float,
    tg: TaskGroup,
) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            tg.start_soon(_reload, agent, handler)
            continue
        log.info("received %s: draining", signal.Signals(signum).name)
        await agent.stop(grace)
        return  # later signals wait unread: the agent drains and ends by itself


async def _mark_running(agent: SiteAgent, held: PidFileClaim) -> None:
    await agent.running.wait()
    held.mark_running()


async def _reload(agent: SiteAgent, handler: RotatingFileHandler) -> None:
    """settings.yml into ``agent``, once it runs; a malformed file changes nothing."""
    await agent.running.wait()
    settings_file = agent.site_dir.settings_file
    log.info("received SIGHUP: reloading %s", settings_file)
    try:
        plan = plan_reload(agent.config, settings_file)
    except ConfigError as exc:
        log.error("settings.yml not reloaded, the agent keeps its current settings: %s", exc)
        return
    agent.reconfigure(plan.config)
    apply_rotation(handler, plan.config.logs)
    for level, message in plan.messages():
        log.log(level, message)
