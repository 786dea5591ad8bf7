"""The pilot: claims runnable jobs from the site's queue, runs them on its nodes, reports outcomes.

Lifecycle ``CREATED → RUNNING → DRAINING → STOPPED``:

* RUNNING: consumes the runnable queue (messages of up to ``SHARED_MAX`` jobs) with a
  prefetch that follows the free capacity (none at all while there is no room, so a
  busy launcher holds no job back from the others). Jobs of a delivery beyond the room
  and the claim-ahead allowance are held while runs finish at a pace, for at most ten
  times ``claim_ahead_s``; then, or at once when there is no pace (long jobs), their
  messages go back to the queue in their place, for others (a job of such a message
  claimed here meanwhile is dropped when it comes round again). Delivered jobs are
  claimed in one conditional transition to RUNNING tagged with the session; a job
  claimed elsewhere (or no longer runnable) is dropped.
  Besides the jobs that fit the free room, a launcher claims a few *ahead* (``ahead``).
  A job that fits the allocation but not its free room now is held until room
  frees. A job that can never run here (too big, wrong tags, too long for the time
  left) is deferred back to the queue for other launchers and, unless only its tags
  differ, marked ``unfit``.
  A job moved out of RUNNING under the launcher (a user's kill or deletion: RUNNING →
  FAILED) is heard on a private queue of the site's run ends (``launcher.kills``): its
  run's process group is terminated and its outcome dropped; a job claimed ahead and
  not started is forgotten.
* DRAINING (near the wall time, when idle, on SIGTERM/SIGINT): no more claims; jobs
  claimed ahead and not started are given back (RUNNING → RESTART_READY); at the end
  of the wall time (at once on a signal) running jobs are terminated → RUN_TIMEOUT.
* STOPPED: every outcome committed, the session ended. When MongoDB does not answer
  within ``stop_timeout_s`` of the stop, the pilot exits anyway: the outcomes not
  committed are counted in the report (``uncommitted``) and logged, and the reaper
  settles those jobs once the session's heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import anyio
import anyio.abc
from aio_pika.abc import AbstractRobustConnection

from balsam_mq.broker import (
    Consumer,
    Deferrals,
    Topology,
    close_channel,
    declare_core,
    declare_site,
)
from balsam_mq.domain import (
    RUNNABLE_STATES,
    Actor,
    App,
    Change,
    Delivery,
    Job,
    JobState,
    Parked,
    parked_failures,
    utcnow,
)
from balsam_mq.launcher.ahead import ClaimedAhead, renew, wanted_prefetch
from balsam_mq.launcher.config import LauncherConfig
from balsam_mq.launcher.intake import Announced, triage
from balsam_mq.launcher.kills import Claims, KillWatch
from balsam_mq.launcher.nodes import Demand, NodePool, Placement
from balsam_mq.launcher.outcomes import ActiveRun
from balsam_mq.launcher.prepare import Preparer
from balsam_mq.launcher.reporter import Reporter
from balsam_mq.launcher.running import PilotReport, Runs
from balsam_mq.launcher.runs import Executor
from balsam_mq.launcher.session import Heartbeat, end_session, open_session
from balsam_mq.store import Store, unavailable

__all__ = ["Pilot", "PilotReport", "PilotState"]

log = logging.getLogger(__name__)
S = JobState


class PilotState(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class Pilot:
    """Example::

    pilot = Pilot(store, amqp, topology, config, pool=NodePool(nodes), executor=LocalExecutor())
    report = await pilot.run()     # until wall time, idle timeout or request_stop()
    """

    def __init__(
        self,
        store: Store,
        amqp: AbstractRobustConnection,
        topology: Topology,
        config: LauncherConfig,
        *,
        pool: NodePool,
        executor: Executor,
    ) -> None:
        self.store = store
        self._amqp = amqp
        self._topology = topology
        self.config = config
        self.pool = pool
        self.executor = executor
        self.state = PilotState.CREATED
        self.report = PilotReport()
        self.sessions = store.sessions
        self.session_id: int | None = None
        self._ahead = ClaimedAhead(config.settings)
        self._apps: dict[int | None, App] = {}  # of the jobs claimed and not yet started
        self._consumer = Consumer(
            amqp,
            topology,
            topology.site(config.site_id).runnable,
            self,
            prefetch=max(1, wanted_prefetch(pool.free_slots(), self._ahead)),
            batch_size=config.settings.max_prefetch,
            transient=unavailable,
        )
        self._reporter = Reporter(store, more_coming=lambda: bool(self._runs))
        self._kills = KillWatch(store, self.held, self.moved_on)
        self._runs = Runs(
            Preparer(config, workdirs_at_launch=executor.makes_workdirs),
            executor,
            self._kills,
            config.settings,
            self.report,
            submit=self._reporter.submit,
            ended=self._run_ended,
            settled=self._check_drained,
        )
        self._busy = 0  # handler calls in progress
        self._room = anyio.Event()  # replaced each time capacity changes or claiming stops
        self._retune = anyio.Event()
        self._drained = anyio.Event()
        self.claiming_stopped = anyio.Event()  # set when RUNNING → DRAINING
        self.ready = anyio.Event()  # set once the runnable queue is being consumed
        self._tg: anyio.abc.TaskGroup | None = None
        self._started = time.monotonic()
        self._last_activity = self._started
        self._marked: set[tuple[int, str]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def claiming(self) -> bool:
        return self.state is PilotState.RUNNING

    @property
    def running_jobs(self) -> list[int]:
        return self._runs.job_ids()

    def remaining_s(self) -> float:
        return self.config.wall_time_s - (time.monotonic() - self._started)

    async def run(self) -> PilotReport:
        if self.state is not PilotState.CREATED:
            raise RuntimeError(f"a pilot runs once; this one is {self.state}")
        channel = await self._amqp.channel()
        try:  # the runnable queue and its bindings exist before we consume (no relay yet)
            await declare_core(channel, self._topology)
            await declare_site(channel, self._topology, self.config.site_id)
        finally:
            await close_channel(channel)
        self._started = self._last_activity = time.monotonic()
        session_id = await open_session(self.sessions, self.config, self.pool)
        self.session_id = self.report.session_id = session_id
        self.state = PilotState.RUNNING
        if self._runs.killing is not None:  # a stop was requested while we were starting
            self.stop_claiming(self._runs.killing)
        heartbeat = Heartbeat(
            self.sessions, session_id, self.config.settings.heartbeat_s, self._session_lost
        )
        try:
            # run ends are heard before anything is claimed
            await self._kills.open(self._amqp, self._topology, self.config.site_id)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._runs.attach(tg)
                tg.start_soon(heartbeat.run, lambda: {"running": len(self._runs)})
                tg.start_soon(self._reporter.run)
                tg.start_soon(self._consume)
                tg.start_soon(self._follow_capacity)
                tg.start_soon(self._clock)
                tg.start_soon(self._expire_ahead)
                tg.start_soon(self._kills.run)
                if self.config.settings.idle_timeout_s is not None:
                    tg.start_soon(self._idle_watch, self.config.settings.idle_timeout_s)
                await self._drained.wait()
                deadline = anyio.current_time() + self.config.settings.stop_timeout_s
                with anyio.CancelScope(shield=True, deadline=deadline):
                    await self._consumer.stop()
                    await self._reporter.flush()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._runs.kill_now()  # only if we were cancelled from outside
                await self._kills.aclose()
                await self.executor.close()
                await self._end_session(self.session_id)
            self.state = PilotState.STOPPED
            log.info("launcher session %s stopped: %s", self.session_id, self.report)
        return self.report

    async def _end_session(self, session_id: int) -> None:
        uncommitted = self._reporter.pending
        self.report.uncommitted = len(uncommitted)
        await end_session(
            self.sessions,
            session_id,
            [c.job_id for c in uncommitted],
            stop_timeout_s=self.config.settings.stop_timeout_s,
            stop_reason=self.report.stop_reason,
        )

    async def _session_lost(self) -> int:
        """The site agent took this session for dead (cut off from MongoDB longer than
        the reaper's grace) and timed out its jobs, which run again: the runs still here
        are killed (their outcomes would not land), the jobs claimed ahead forgotten, and
        the launcher goes on under a new session."""
        assert self._tg is not None and self.session_id is not None
        lost = self.session_id
        reason = f"launcher session {lost} was taken for dead by the site agent"
        killed = self._runs.kill_for(reason)
        if self._ahead.take():
            self._capacity_changed()
        session_id = await open_session(self.sessions, self.config, self.pool)
        self.session_id = self.report.session_id = session_id
        log.warning(
            "launcher session %s lost: %d run(s) killed; going on as session %s",
            lost,
            killed,
            session_id,
        )
        return session_id

    def stop_claiming(self, reason: str) -> None:
        """Claim nothing more; exit once running jobs are done (or killed at wall time)."""
        if self.state is not PilotState.RUNNING:
            return
        log.info("launcher session %s stops claiming: %s", self.session_id, reason)
        self.state = PilotState.DRAINING
        self.report.stop_reason = reason
        self.claiming_stopped.set()
        self._capacity_changed()
        if self._tg is not None:
            self._tg.start_soon(self._consumer.stop)
            if self._ahead:
                self._busy += 1
                self._tg.start_soon(self._give_back, reason)
        self._check_drained()

    def request_stop(self, reason: str = "stop requested") -> None:
        """SIGTERM/SIGINT: stop claiming, terminate running jobs (→ RUN_TIMEOUT), exit."""
        self.stop_claiming(reason)
        self._runs.kill_all(reason)

    # --- jobs moved out of RUNNING under the launcher (``launcher.kills``) --------------

    def held(self) -> Claims:
        """The jobs this launcher holds (running, or claimed ahead), with the session each
        was claimed under."""
        claims = dict(self._runs.claims())
        claims.update((a.job.id, a.job.session_id) for a in self._ahead if a.job.id is not None)
        return claims

    def moved_on(self, job_id: int, reason: str) -> None:
        """The job left RUNNING under us (``reason``: why, as recorded on it): its run is
        killed and its outcome dropped; claimed ahead, it is forgotten."""
        if self._runs.moved_on(job_id, reason):
            return
        if self._ahead.forget(job_id):
            log.debug("Job %s left RUNNING before it started (%s): not run", job_id, reason)
            self.report.killed += 1
            self._capacity_changed()
            self._check_drained()

    def _check_drained(self) -> None:
        if self.state is PilotState.DRAINING and not (self._runs or self._busy or self._ahead):
            self._drained.set()

    async def _give_back(self, reason: str, *, older_than: float | None = None) -> None:
        """Jobs claimed ahead and never started (those queued before ``older_than``, or
        all) go back to the queue for other launchers: RUNNING → RESTART_READY."""
        try:
            back = self._ahead.take(older_than)
            for job, _, known in back:
                assert job.id is not None
                self._reporter.submit(
                    Change(
                        job.id,
                        S.RUNNING,
                        S.RESTART_READY,
                        state_data={"reason": f"given back unstarted: {reason}"},
                        by=Actor.LAUNCHER,
                        held_by=job.session_id,
                        known=known,
                    )
                )
            if back:
                log.info("gave back %d job(s) claimed ahead: %s", len(back), reason)
                self._capacity_changed()
        finally:
            self._busy -= 1
            self._check_drained()

    async def _expire_ahead(self) -> None:
        """Give back jobs claimed ahead that waited ten times ``claim_ahead_s`` for room
        (the pace they were claimed for did not hold: a long job came in between)."""
        limit = self._ahead.hold_s()
        while self.claiming:
            await anyio.sleep(limit / 2)
            cutoff = time.monotonic() - limit
            oldest = self._ahead.oldest()
            if oldest is not None and oldest < cutoff and self.claiming:
                self._busy += 1
                await self._give_back(f"no room for {limit:g} s", older_than=cutoff)

    async def _consume(self) -> None:
        try:
            await self._consumer.start()
            self.ready.set()
            await self._consumer.run()
        except Exception as exc:
            log.exception("runnable queue consumer failed")
            self.stop_claiming(f"consumer failed: {exc}")

    async def _clock(self) -> None:
        await anyio.sleep(max(0.0, self.remaining_s() - self.config.drain_margin_s))
        self.stop_claiming("wall time nearly over")
        await anyio.sleep(max(0.0, self.remaining_s()))
        self._runs.kill_all("launcher wall time reached")

    async def _idle_watch(self, idle_s: float) -> None:
        while self.claiming:
            if self._runs or self._busy:
                self._last_activity = time.monotonic()
            idle_for = time.monotonic() - self._last_activity
            if idle_for >= idle_s:
                self.stop_claiming(f"idle for {idle_s:g} s")
                return
            await anyio.sleep(min(idle_s - idle_for, 1.0) + 0.01)

    # --- capacity and prefetch ---------------------------------------------------------

    def _capacity_changed(self) -> None:
        room, self._room = self._room, anyio.Event()
        room.set()
        self._retune.set()

    async def _follow_capacity(self) -> None:
        """Renew the subscription when the free room moved far from the current prefetch
        (a renewal costs three broker round trips)."""
        while True:
            await self._retune.wait()
            self._retune = anyio.Event()
            if not self.claiming:
                continue
            wanted = wanted_prefetch(self.pool.free_slots(), self._ahead)
            current = self._consumer.prefetch
            if renew(current, wanted):
                await self._consumer.set_prefetch(wanted)

    # --- claiming (the consumer's handler) ---------------------------------------------

    async def handle(self, batch: Sequence[Delivery]) -> Deferrals | None:
        self._busy += 1
        try:
            return await self._handle(batch)
        finally:
            self._busy -= 1
            self._check_drained()

    async def parked(self, delivery: Delivery, queue: str, error: str) -> None:
        """The message could not be handled: its jobs still runnable fail, naming why."""
        parked = Parked(delivery.message_id, queue, error)
        changes = parked_failures(delivery.events(), tuple(RUNNABLE_STATES), parked)
        if changes:
            await self.store.jobs.transition(changes)

    async def _handle(self, batch: Sequence[Delivery]) -> Deferrals | None:
        if not self.claiming:
            return {d.message_id: 1 for d in batch}  # back to the queue for another launcher
        announced = Announced.of(batch)
        # the events name the apps: jobs and apps are read at once, one round trip
        known: dict[int, dict[str, Any]] = {}  # what the claim decides on, as read here
        jobs, found_apps = await asyncio.gather(
            self.store.jobs.get_many(list(announced.event), known=known),
            self.store.apps.get_many(announced.app_ids),
        )
        apps = {a.id: a for a in found_apps}
        if missing := {j.app_id for j in jobs} - set(apps):
            apps.update((a.id, a) for a in await self.store.apps.get_many(missing))
        triaged = triage(
            announced,
            jobs,
            apps,
            config=self.config,
            pool=self.pool,
            remaining_s=self.remaining_s(),
            now=utcnow(),
        )
        deferrals = triaged.deferrals
        self.report.dropped += triaged.dropped
        self.report.deferred += len(deferrals)
        if triaged.unfit:
            await self._mark_unfit(triaged.unfit)
        pending = triaged.candidates
        while pending:
            if not self.claiming:
                for job in pending:
                    assert job.id is not None
                    deferrals[announced.event[job.id]] = 1
                break
            room = self._room
            take = self._claimable(pending)
            if take:
                await self._claim(take, apps, known)
                pending = pending[len(take) :]
            elif self._full():
                if self._ahead.allowance() > 0:  # slots free at a pace: hold the rest a while
                    with anyio.move_on_after(self._ahead.hold_s()):
                        await room.wait()
                    if room.is_set():
                        continue
                # more than we can take: their messages back in place, for others (a job
                # of theirs claimed here meanwhile is dropped when it is seen again)
                for job in pending:
                    assert job.id is not None
                    deferrals[announced.message[job.id]] = 0
                self.report.given_back += len(pending)
                break
            else:
                await room.wait()  # fits this allocation, not its free room: hold it
        return deferrals or None

    def _full(self) -> bool:
        """No free slot, and no claim-ahead allowance left."""
        return self.pool.free_slots() == 0 and self._ahead.allowance() <= len(self._ahead)

    def _claimable(self, pending: list[Job]) -> list[tuple[Job, Placement | None]]:
        """The first of ``pending`` to claim now: those that fit the free room (reserved
        here), then the claim-ahead top-up (started when room frees)."""
        take: list[tuple[Job, Placement | None]] = []
        ahead = self._ahead.top_up()
        for job in pending:
            assert job.id is not None
            placement = None
            if not self._ahead and all(p is not None for _, p in take):
                placement = self.pool.assign(job.id, Demand.of(job.resources))
            if placement is None:
                if ahead <= 0:
                    break
                ahead -= 1
            take.append((job, placement))
        return take

    async def _mark_unfit(self, unfit: list[tuple[Job, str]]) -> None:
        """Make visible on the job why this launcher leaves it (once per session and reason)."""
        for job, reason in unfit:
            assert job.id is not None
            log.debug("Job %s left runnable: %s", job.id, reason)  # job.unfit says it once
            if (job.id, reason) in self._marked:
                continue
            self._marked.add((job.id, reason))
            note = {
                "session_id": self.session_id,
                "hostname": socket.gethostname(),
                "reason": reason,
                "at": utcnow(),
            }
            await self.store.jobs.update_fields_if(job.id, job.state, {"unfit": note})

    async def _claim(
        self,
        take: list[tuple[Job, Placement | None]],
        apps: dict[int | None, App],
        known: Mapping[int, Mapping[str, Any]],
    ) -> None:
        fields: dict[str, Any] = {"session_id": self.session_id, "unfit": None}
        if self.config.batch_job_id is not None:
            fields["batch_job_id"] = self.config.batch_job_id
        by = Actor.LAUNCHER
        changes = [
            Change(job.id, job.state, S.RUNNING, fields=fields, by=by, known=known.get(job.id))
            for job, _ in take
            if job.id is not None
        ]
        try:
            result = await self.store.jobs.transition(changes)
        except BaseException:
            for job, _ in take:
                assert job.id is not None
                self.pool.free(job.id)
            self._capacity_changed()
            raise
        moved = set(result.moved)
        self.report.claimed += len(moved)
        self.report.dropped += len(result.unmoved)
        self._last_activity = time.monotonic()
        for job, placement in take:
            assert job.id is not None
            if job.id not in moved:
                self.pool.free(job.id)  # claimed by another launcher meanwhile
                continue
            claimed = job.model_copy(
                update={
                    "state": S.RUNNING,
                    "session_id": self.session_id,
                    "batch_job_id": self.config.batch_job_id or job.batch_job_id,
                }
            )
            after = result.after.get(job.id)  # the outcome's change knows it
            if placement is None:
                self._ahead.add(claimed, after)
                self._apps[claimed.app_id] = apps[claimed.app_id]
            else:
                await self._start(claimed, placement, apps, after)
        if self._ahead and not self.claiming:
            # stopped claiming meanwhile: what was claimed ahead goes back
            self._busy += 1
            await self._give_back(self.report.stop_reason)
        await self._start_queued()  # room may have freed while the claim was in flight
        if result.unmoved:
            self._capacity_changed()
        else:
            self._retune.set()

    async def _start_queued(self) -> None:
        """Start jobs claimed ahead, in order, while they fit the free room."""
        while self.claiming and (placed := self._ahead.next_placed(self._place)):
            (job, _, known), placement = placed
            await self._start(job, placement, self._apps, known)

    def _place(self, job: Job) -> Placement | None:
        assert job.id is not None
        return self.pool.assign(job.id, Demand.of(job.resources))

    async def _start(
        self,
        job: Job,
        placement: Placement,
        apps: dict[int | None, App],
        known: Mapping[str, Any] | None = None,
    ) -> None:
        assert job.id is not None
        if not await self._runs.start(job, placement, apps.get(job.app_id), known):
            self.pool.free(job.id)
            self._capacity_changed()

    async def _run_ended(self, run: ActiveRun) -> None:
        self.pool.free(run.job_id)
        now = time.monotonic()
        self._ahead.run_ended(now)
        self._last_activity = now
        await self._start_queued()  # the next job claimed ahead takes the room at once
        self._capacity_changed()
