"""The launcher's ear for runs ended from outside: a private queue on its site's FAILED events.

A user kills a RUNNING job (or deletes it, which kills it first) by moving it to FAILED;
the relay publishes that event, and every launcher of the site receives it on a private
auto-delete queue bound to ``Topology.run_ends`` before the launcher claims anything. A
launcher holding the job (running it, or claimed ahead of a free slot) asks MongoDB
whether the job is still RUNNING under its claim — delivery is at-least-once, so only
the stored state counts — and if not, the pilot kills the run's process group and drops
its outcome (the job has moved on: ``Change.held_by``). A departure heard while the
job's claim was in flight is remembered, and checked when the run starts. After a
broker reconnection, when events may have been missed, every held job is checked.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping

import anyio
from aio_pika.abc import AbstractRobustConnection
from pymongo.errors import PyMongoError

from balsam_mq.broker import Topology
from balsam_mq.domain import JobState
from balsam_mq.errors import StoreError, brief
from balsam_mq.sdk.stream import EventStream
from balsam_mq.store import Store

log = logging.getLogger(__name__)

# job id -> the launcher session it was claimed under
Claims = Mapping[int, int | None]
# how many departures heard for jobs not held (yet) are remembered
MEMORY = 10_000


class KillWatch:
    """Tells ``moved_on(job_id, reason)`` about each job of ``held()`` that left RUNNING
    under its claim. Example (the pilot's use)::

        watch = KillWatch(store, pilot.held, pilot.moved_on)
        await watch.open(amqp, topology, site_id)   # bound: claim from here on
        tg.start_soon(watch.run)
    """

    def __init__(
        self,
        store: Store,
        held: Callable[[], Claims],
        moved_on: Callable[[int, str], None],
    ) -> None:
        self._store = store
        self._held = held
        self._moved_on = moved_on
        self._stream: EventStream | None = None
        self._heard: OrderedDict[int, None] = OrderedDict()

    async def open(self, amqp: AbstractRobustConnection, topology: Topology, site_id: int) -> None:
        """Bind the private queue; every run end published from now on is heard."""
        self._stream = await EventStream.open(amqp, topology, topology.run_ends(site_id))

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def run(self) -> None:
        """Hear run ends until cancelled. A failure is logged and the watch goes on: it
        never takes the launcher down."""
        if self._stream is None:
            raise RuntimeError("KillWatch.run() before open()")
        while True:
            try:
                await self._hear(self._stream)
            except Exception:
                log.exception("hearing killed jobs failed; going on")
                await anyio.sleep(1.0)

    async def _hear(self, stream: EventStream) -> None:
        events = await stream.next()
        if events is None:  # reconnected: what was missed is read from MongoDB
            await self.settle(self._held().keys())
            return
        ended = set()
        for event in events:
            if event.job_id is not None and event.from_state == JobState.RUNNING:
                ended.add(event.job_id)
                self._remember(event.job_id)
        if ended:
            await self.settle(ended)

    def heard(self, job_id: int) -> bool:
        """Whether a run end of this job was heard lately (check it before running it)."""
        return job_id in self._heard

    def _remember(self, job_id: int) -> None:
        self._heard[job_id] = None
        self._heard.move_to_end(job_id)
        while len(self._heard) > MEMORY:
            self._heard.popitem(last=False)

    async def settle(self, job_ids: Collection[int]) -> None:
        """Tell ``moved_on`` about the jobs of ``job_ids`` still held that are no longer
        RUNNING under their claim (retried while MongoDB does not answer)."""
        delay = 0.5
        while True:
            claims = {i: s for i, s in self._held().items() if i in job_ids}
            if not claims:
                return
            try:
                gone = await self.departed(claims)
                break
            except (StoreError, PyMongoError) as exc:
                log.warning("checking jobs %s failed (%s); retried", sorted(claims), brief(exc))
                await anyio.sleep(delay)
                delay = min(2 * delay, 10.0)
        held = self._held()
        for job_id, reason in gone.items():
            if held.get(job_id, -1) == claims[job_id]:  # still the same claim
                self._moved_on(job_id, reason)

    async def departed(self, claims: Claims) -> dict[int, str]:
        """The jobs of ``claims`` no longer RUNNING under that claim, each with why."""
        found = {j.id: j for j in await self._store.jobs.get_many(list(claims))}
        gone: dict[int, str] = {}
        for job_id, session_id in claims.items():
            job = found.get(job_id)
            if job is None:
                gone[job_id] = "the job was deleted"
            elif job.state is not JobState.RUNNING or job.session_id != session_id:
                reason = job.state_data.get("reason") or f"the job is {job.state.value}"
                gone[job_id] = str(reason)
        return gone
