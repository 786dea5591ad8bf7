"""The launcher's session: its record in ``sessions`` and the heartbeat the reaper watches."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio
from pymongo.errors import PyMongoError

from balsam_mq.domain import Session
from balsam_mq.errors import StoreError, brief
from balsam_mq.launcher.config import LauncherConfig
from balsam_mq.launcher.nodes import NodePool
from balsam_mq.store import uncancelled
from balsam_mq.store.sessions import SessionRepository

log = logging.getLogger(__name__)


async def open_session(sessions: SessionRepository, config: LauncherConfig, pool: NodePool) -> int:
    """Register this launcher (host, pid, nodes, mode, wall time); its session id."""
    session = await sessions.create(
        Session(
            site_id=config.site_id,
            batch_job_id=config.batch_job_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
        ),
        nodes=pool.summary(),
        job_mode=config.job_mode,
        wall_time_min=config.wall_time_min,
        filter_tags=config.filter_tags,
    )
    assert session.id is not None
    log.info(
        "launcher session %s: %d node(s), %s mode, %.1f min",
        session.id,
        len(pool),
        config.job_mode,
        config.wall_time_min,
    )
    return session.id


async def end_session(
    sessions: SessionRepository,
    session_id: int,
    uncommitted: Sequence[int],
    *,
    stop_timeout_s: float,
    stop_reason: str,
) -> None:
    """Record the session's end, unless MongoDB is away: then say what is left to the
    reaper. ``uncommitted``: the jobs whose run outcomes MongoDB did not take within
    ``stop_timeout_s`` of the stop (ending the session needs MongoDB too; a silent
    session is reaped alike)."""
    if uncommitted:
        log.warning(
            "launcher session %s exits with %d run outcome(s) not committed (MongoDB "
            "did not take them within %g s): the reaper times out Job(s) %s once the "
            "session's heartbeat is stale",
            session_id,
            len(uncommitted),
            stop_timeout_s,
            ", ".join(str(job_id) for job_id in uncommitted),
        )
        return
    try:
        await uncancelled(
            partial(sessions.end, session_id, stop_reason=stop_reason),
            within=max(stop_timeout_s, 1.0),
        )
    except (StoreError, PyMongoError) as exc:
        log.warning(
            "launcher session %s could not record its end (%s); its heartbeat goes "
            "stale and the reaper ends it",
            session_id,
            brief(exc),
        )


class Heartbeat:
    """Refreshes the session's ``heartbeat`` every ``interval`` seconds until cancelled.

    A session whose heartbeat is older than the reaper's grace has its RUNNING jobs
    moved to RUN_TIMEOUT, so a failed beat is logged and retried, never fatal. A beat
    that finds the session taken for dead (the launcher was cut off longer than the
    grace) calls ``on_lost``, which returns the id of the session that replaces it.
    """

    def __init__(
        self,
        sessions: SessionRepository,
        session_id: int | None,
        interval: float,
        on_lost: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        if session_id is None:
            raise ValueError("a heartbeat needs a stored session")
        self.sessions = sessions
        self.session_id = session_id
        self.interval = interval
        self.on_lost = on_lost
        self.beats = 0

    async def run(self, status: Callable[[], dict[str, Any]] | None = None) -> None:
        failing = False  # one line when heartbeats start failing, one when they resume
        while True:
            await anyio.sleep(self.interval)
            try:
                fields = status() if status else {}
                alive = await uncancelled(
                    partial(self.sessions.heartbeat, self.session_id, **fields),
                    within=max(self.interval, 1.0),
                )
            except (PyMongoError, StoreError) as exc:
                if not failing:
                    log.warning("session %s: heartbeats failing (%s)", self.session_id, brief(exc))
                failing = True
                continue
            if failing:
                log.warning("session %s: heartbeats resumed", self.session_id)
                failing = False
            self.beats += 1
            if not alive:
                log.error(
                    "session %s was taken for dead by the site agent (no heartbeat for its "
                    "grace): its jobs were timed out and run again",
                    self.session_id,
                )
                if self.on_lost is not None:
                    self.session_id = await self.on_lost()
