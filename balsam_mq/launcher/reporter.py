"""The launcher's writer of run outcomes: RUN_DONE/RUN_ERROR/RUN_TIMEOUT, committed by group.

An outcome is committed at once when nothing else is being written; outcomes that
arrive while a commit is in flight are gathered and committed together by the next
one. Under load (the commit before carried several outcomes), the next one gathers
up to :data:`GATHER_S` longer, while more outcomes can come (runs are still in
flight): a transaction costs its client a few milliseconds of CPU whatever it carries,
and the launcher's CPU is what a flood of short jobs runs out of first. A trickle of
jobs is reported without delay, a flood in few transactions, and the last outcomes of a
flood as soon as its last run ends. A failed commit is retried with backoff: an outcome
is never dropped while the launcher lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial

from pymongo.errors import PyMongoError

from balsam_mq.domain import App, Change
from balsam_mq.errors import StoreError, brief
from balsam_mq.store import Store, uncancelled

log = logging.getLogger(__name__)
COMMIT_TIMEOUT_S = 5.0  # one attempt's bound: a stopping launcher waits at most this for it
GATHER_S = 0.05  # under load, how much longer the next commit gathers outcomes


class Reporter:
    """``more_coming``: whether outcomes may still follow (the launcher's runs in flight)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 500,
        more_coming: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._more_coming = more_coming
        self._settled = asyncio.Event()  # set when an outcome arrives and none may follow
        self._pending: list[Change] = []
        self._inflight: list[Change] = []
        self._apps: dict[int, App] = {}  # the latest version seen of each app
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.committed = 0
        self.commits = 0
        self.unmoved: dict[int, str | None] = {}  # job id -> state found, for outcomes not applied

    def submit(self, change: Change, app: App | None = None) -> None:
        """Commit ``change`` soon; ``app``: the version of the job's app it ran with, whose
        hooks decide the steps passed through after it."""
        self._pending.append(change)
        if app is not None and app.id is not None:
            self._apps[app.id] = app
        self._idle.clear()
        self._wake.set()
        if not self._more_coming():
            self._settled.set()

    @property
    def pending(self) -> list[Change]:
        """The outcomes submitted and not yet committed (one in flight included)."""
        return [*self._inflight, *self._pending]

    async def flush(self) -> None:
        """Wait until every submitted outcome is committed."""
        await self._idle.wait()

    async def run(self) -> None:
        backoff = 0.1
        outage: float | None = None  # when committing began to fail
        while True:
            await self._wake.wait()
            self._wake.clear()
            carried = 0  # outcomes in the last commit of this busy stretch
            while self._pending:
                if carried > 1 and len(self._pending) < self._max_batch and self._more_coming():
                    self._settled.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._settled.wait(), GATHER_S)
                batch, self._pending = (
                    self._pending[: self._max_batch],
                    self._pending[self._max_batch :],
                )
                self._inflight = batch
                try:
                    result = await uncancelled(
                        partial(self._store.jobs.transition, batch, apps=self._apps),
                        within=COMMIT_TIMEOUT_S,
                    )
                except (StoreError, PyMongoError) as exc:
                    if outage is None:
                        outage = time.monotonic()
                        log.warning(
                            "committing run outcomes failed (%s); kept and retried until "
                            "MongoDB answers",
                            brief(exc),
                        )
                    self._pending, self._inflight = batch + self._pending, []
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if outage is not None:
                    log.warning(
                        "run outcomes committed again after %.0f s",
                        time.monotonic() - outage,
                    )
                    outage = None
                self._inflight = []
                carried = len(batch)
                backoff = 0.1
                self.commits += 1
                self.committed += len(result.moved)
                log.info(  # one line per commit, never per job
                    "committed %d run outcome(s)%s",
                    len(result.moved),
                    f", {len(result.unmoved)} not applied" if result.unmoved else "",
                )
                for job_id, state in result.unmoved.items():
                    # the reaper may have timed the job out if our heartbeats stalled
                    log.warning("Job %s: outcome not applied, job is now %s", job_id, state)
                    self.unmoved[job_id] = state.value if state is not None else None
            self._idle.set()
