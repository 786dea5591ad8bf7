"""The runs a launcher has started: launched on their node, watched to their end, killed
when asked, and their outcomes handed to the reporter.

A run's end is told to the pilot (``ended``: its room is free) before its outcome is
reported; a run whose job left RUNNING under it (``moved_on``) is killed and reports
nothing; a run killed by the launcher (wall time, a stop, a lost session) ends
RUN_TIMEOUT with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.abc
from pymongo.errors import PyMongoError

from balsam_mq.domain import App, Change, Job, JobState
from balsam_mq.errors import StoreError
from balsam_mq.launcher.config import LauncherSettings
from balsam_mq.launcher.kills import Claims, KillWatch
from balsam_mq.launcher.nodes import Placement
from balsam_mq.launcher.outcomes import ActiveRun, launch_failure, outcome
from balsam_mq.launcher.prepare import Preparer
from balsam_mq.launcher.runs import Executor

log = logging.getLogger(__name__)
S = JobState


@dataclass
class PilotReport:
    session_id: int | None = None
    claimed: int = 0
    done: int = 0
    errors: int = 0
    timed_out: int = 0
    dropped: int = 0  # claimed by another launcher, or no longer runnable
    deferred: int = 0  # sent back for other launchers (unfit, other tags)
    given_back: int = 0  # delivered beyond what could be taken: back to the queue at once
    uncommitted: int = 0  # outcomes MongoDB did not take before the stop timeout
    killed: int = 0  # runs (or claims ahead) ended because their job left RUNNING under them
    stop_reason: str = ""

    def tally(self, change: Change) -> None:
        """Count a run's outcome."""
        if change.to is S.RUN_TIMEOUT:
            self.timed_out += 1
        elif change.to is S.RUN_DONE:
            self.done += 1
        else:
            self.errors += 1


class Runs:
    """The runs in progress, by job id. ``attach`` gives them the task group their
    watchers run in; ``report(change, app)`` takes each outcome; ``ended(run)`` is told of
    each run's end before its outcome; ``settled()`` after it."""

    def __init__(
        self,
        preparer: Preparer,
        executor: Executor,
        kills: KillWatch,
        settings: LauncherSettings,
        report: PilotReport,
        *,
        submit: Callable[[Change, App | None], None],
        ended: Callable[[ActiveRun], Awaitable[None]],
        settled: Callable[[], None],
    ) -> None:
        self._preparer = preparer
        self._executor = executor
        self._kills = kills
        self._settings = settings
        self._report = report
        self._submit = submit
        self._ended = ended
        self._settled = settled
        self._runs: dict[int, ActiveRun] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.killing: str | None = None  # why every run is being killed, once it is

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[ActiveRun]:
        return iter(self._runs.values())

    def job_ids(self) -> list[int]:
        return sorted(self._runs)

    def claims(self) -> Claims:
        """The jobs running, with the session each was claimed under."""
        return {job_id: run.job.session_id for job_id, run in self._runs.items()}

    async def start(
        self,
        job: Job,
        placement: Placement,
        app: App | None,
        known: Mapping[str, Any] | None = None,
    ) -> bool:
        """Launch ``job`` on its placement; False when it was not started (it left
        RUNNING meanwhile, or could not be launched: its failure is reported), and its
        room is the caller's to free."""
        assert job.id is not None and self._tg is not None
        if await self._departed(job):
            return False
        try:
            prepared = self._preparer.prepare(job, app, placement)
            launch = await self._executor.launch(prepared.spec, placement.node_indexes[0])
        except Exception as exc:
            log.warning("Job %s could not be launched: %s", job.id, exc)
            self._report.errors += 1
            self._submit(launch_failure(job, exc), None)
            return False
        run = ActiveRun(
            job, placement, launch, prepared.workdir, prepared.python, app=app, known=known
        )
        self._runs[job.id] = run
        if self.killing is not None:
            self._kill(run, self.killing)
        self._tg.start_soon(self._supervise, run)
        if self._kills.heard(job.id):  # heard while it was being launched
            self._tg.start_soon(self._recheck, job.id)
        return True

    def kill_all(self, reason: str) -> None:
        """Kill every run, and any started from now on (→ RUN_TIMEOUT with the first
        reason given)."""
        if self.killing is None:
            self.killing = reason
        for run in self._runs.values():
            self._kill(run, self.killing)

    def kill_for(self, reason: str) -> int:
        """Kill every run now with ``reason`` (the session they ran under was lost);
        how many."""
        killed = 0
        for run in self._runs.values():
            if run.timeout_reason is None:
                run.timeout_reason = reason
                self._kill_process(run)
                killed += 1
        return killed

    async def kill_now(self) -> None:
        """Kill what still runs at once: the pilot was cancelled from outside."""
        for run in list(self._runs.values()):
            await run.launch.kill(0)

    def moved_on(self, job_id: int, reason: str) -> bool:
        """The job left RUNNING under its run (``reason``: as recorded on it): the run is
        killed and its outcome dropped. False when the job does not run here."""
        run = self._runs.get(job_id)
        if run is None:
            return False
        if run.moved_on is None:
            log.debug("Job %s left RUNNING (%s): its run is killed", job_id, reason)
            run.moved_on = reason
            if run.timeout_reason is None:  # else being killed already
                self._kill_process(run)
        return True

    def _kill(self, run: ActiveRun, reason: str) -> None:
        if run.timeout_reason is None and run.moved_on is None:
            run.timeout_reason = reason
            self._kill_process(run)

    def _kill_process(self, run: ActiveRun) -> None:
        if self._tg is not None:
            self._tg.start_soon(run.launch.kill, self._settings.kill_grace_s)

    async def _departed(self, job: Job) -> bool:
        """Whether a job about to start was heard to leave RUNNING under its claim (a kill
        heard while the claim was in flight) and indeed did."""
        assert job.id is not None
        if not self._kills.heard(job.id):
            return False
        try:
            gone = await self._kills.departed({job.id: job.session_id})
        except (StoreError, PyMongoError):
            return False  # started; checked again once it runs
        if job.id in gone:
            log.debug("Job %s left RUNNING before it started (%s): not run", job.id, gone[job.id])
            self._report.killed += 1
            return True
        return False

    async def _recheck(self, job_id: int) -> None:
        try:
            await self._kills.settle({job_id})
        except Exception:  # a surprise here must not take the other runs down
            log.exception("Job %s: checking whether it left RUNNING failed", job_id)

    async def _supervise(self, run: ActiveRun) -> None:
        error: str | None = None
        try:
            code: int | None = await run.launch.wait()
        except Exception as exc:  # a worker lost, a process table surprise: recorded on the job
            code, error = None, f"launcher lost the run: {exc!r}"
        del self._runs[run.job_id]
        await self._ended(run)
        if run.moved_on is not None:  # the job has moved on: no outcome to report
            self._report.killed += 1
            log.debug("Job %s: run killed (exit %s): %s", run.job_id, code, run.moved_on)
        else:
            change = outcome(run, code, error, tail_chars=self._settings.output_tail_chars)
            self._report.tally(change)
            self._submit(change, run.app)
        self._settled()
