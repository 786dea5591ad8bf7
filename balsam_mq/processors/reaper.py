"""The reaper: RUNNING jobs of a launcher session that stopped heartbeating → RUN_TIMEOUT."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import anyio
from pymongo.errors import PyMongoError

from balsam_mq.domain import Actor, Change, JobState, utcnow
from balsam_mq.errors import StoreError, brief
from balsam_mq.store import Store

log = logging.getLogger(__name__)


class Reaper:
    """Every ``interval`` seconds, times out the RUNNING jobs of sessions silent for ``grace``
    seconds, and those of sessions that ended ``grace`` seconds ago without reporting them
    (a launcher that crashed after ending its session, say).

    The timeout goes through the normal RUN_TIMEOUT path, so the app's
    ``handle_timeout`` decides (default: RESTART_READY, to run again elsewhere).

    Launchers cannot heartbeat while MongoDB is away either: after an outage the reaper
    waits ``grace`` (plus one interval) from its last failed pass before it reaps again,
    so a launcher that lived through the outage is not taken for dead.
    """

    def __init__(self, store: Store, site_id: int, *, grace: float, interval: float) -> None:
        self.store = store
        self.site_id = site_id
        self.grace = grace
        self.interval = interval
        self.skipped = 0  # passes skipped because MongoDB could not be reached
        self._hold_until = 0.0  # monotonic time before which nobody is reaped
        self._outage: float | None = None  # monotonic time the current outage was noticed
        self.back = False  # the last pass reached MongoDB

    async def reap_once(self) -> list[int]:
        cutoff = utcnow() - timedelta(seconds=self.grace)
        stale = await self.store.sessions.stale(self.site_id, cutoff)
        holding = await self.store.jobs.sessions_running(self.site_id)
        ended = await self.store.sessions.ended(holding, cutoff) if holding else []
        reasons = {
            **{s: f"launcher session {s} ended without reporting this job" for s in ended},
            **{s: f"launcher session {s} stopped heartbeating" for s in stale},
        }
        if not reasons:
            return []
        if stale:  # first: a launcher that comes back learns it lost its jobs (and kills them)
            await self.store.sessions.mark_lost(stale, f"no heartbeat for {self.grace:g} s")
        jobs = await self.store.jobs.running_in_sessions(sorted(reasons))
        result = await self.store.jobs.transition(
            [
                Change(
                    j.id,
                    JobState.RUNNING,
                    JobState.RUN_TIMEOUT,
                    state_data={"reason": reasons[j.session_id]},
                    by=Actor.REAPER,
                    held_by=j.session_id,
                )
                for j in jobs
                if j.id is not None and j.session_id is not None
            ]
        )
        if result.moved:
            log.warning(
                "reaped %d job(s) of dead session(s) %s", len(result.moved), sorted(reasons)
            )
        return result.moved

    async def run(self) -> None:
        """Reap every ``interval`` seconds, for good: while MongoDB cannot be reached a pass
        is logged and skipped, and the next one tries again."""
        while True:
            try:
                if time.monotonic() >= self._hold_until:
                    await self.reap_once()
                else:  # only check that MongoDB answers
                    await self.store.sessions.stale(self.site_id, utcnow())
                self.back = True
                if self._outage is not None:
                    log.warning(
                        "reaper: MongoDB is back after %.0f s; reaping resumes in %.0f s",
                        time.monotonic() - self._outage,
                        max(0.0, self._hold_until - time.monotonic()),
                    )
                    self._outage = None
            except (PyMongoError, StoreError) as exc:
                self.skipped += 1
                self.back = False
                self._hold_until = time.monotonic() + self.grace + self.interval
                if self._outage is None:
                    self._outage = time.monotonic()
                    log.warning(
                        "reaper: MongoDB unavailable, passes skipped until it is back: %s",
                        brief(exc),
                    )
            await anyio.sleep(self.interval)
