"""Moving jobs through their lifecycle in tests, with the transitions the agent and launcher make.

Jobs are moved from wherever each one is: the store passes through every step that has
no work (``domain.pipeline``), so a job of an app with default hooks is created
PREPROCESSED and goes from RUN_DONE straight to JOB_FINISHED.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from balsam_mq.domain import TRANSITIONS, Actor, Change, Job, JobState, TransitionResult
from balsam_mq.domain.serialization import serialize_exception, serialize_result
from balsam_mq.sdk.backend import Backend
from balsam_mq.store import Store

S = JobState
# the ``drive`` fixture: ``await drive(job_ids, JobState.JOB_FINISHED, result=5)``
Drive = Callable[..., Awaitable[None]]
HAPPY = [
    S.READY,
    S.STAGED_IN,
    S.PREPROCESSED,
    S.RUNNING,
    S.RUN_DONE,
    S.POSTPROCESSED,
    S.STAGED_OUT,
    S.JOB_FINISHED,
]
# the route to each target state from READY
ROUTES: dict[JobState, list[JobState]] = {
    **{s: HAPPY[: i + 1] for i, s in enumerate(HAPPY)},
    S.RUN_ERROR: [*HAPPY[:4], S.RUN_ERROR],
    S.RUN_TIMEOUT: [*HAPPY[:4], S.RUN_TIMEOUT],
    S.FAILED: [*HAPPY[:4], S.RUN_ERROR, S.FAILED],
}


def actor(src: JobState, dst: JobState) -> Actor:
    return sorted(TRANSITIONS[src][dst])[0]


class Jobs(Protocol):
    """What moving jobs needs: ``store.jobs``, or :class:`BackendJobs` over an SDK backend."""

    async def states(self, job_ids: Sequence[int]) -> dict[int, JobState]: ...

    async def transition(self, changes: Sequence[Change]) -> TransitionResult: ...


class BackendJobs:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        return {j.id: j.state for j in await self.backend.get_jobs(job_ids) if j.id is not None}

    async def transition(self, changes: Sequence[Change]) -> TransitionResult:
        return await self.backend.transition_jobs(changes)


async def drive_jobs(
    jobs: Jobs | Store,
    job_ids: Sequence[int],
    to: JobState,
    *,
    result: Any = None,
    exception: BaseException | None = None,
    return_code: int | None = None,
) -> None:
    """Move jobs along the normal route to ``to``, each from the state it is in.

    ``result`` is stored as run()'s return value on RUN_DONE, ``exception`` on RUN_ERROR.
    A job that the store passed through ``to`` (its app has no work there) is an error
    naming it: such a job never rests in ``to``.
    """
    if isinstance(jobs, Store):
        jobs = jobs.jobs
    route = ROUTES[to]
    for _ in route:
        by_state: dict[JobState, list[int]] = defaultdict(list)
        for job_id, state in (await jobs.states(job_ids)).items():
            if state is not to:
                if state not in route:
                    raise AssertionError(f"Job {job_id} is {state.value}, not on the way to {to}")
                by_state[state].append(job_id)
        if not by_state:
            return
        for src, ids in by_state.items():
            dst = route[route.index(src) + 1]
            fields: dict[str, Any] = {}
            if dst == S.RUN_DONE:
                fields = {"return_code": 0, "result": serialize_result(result)}
            if dst == S.RUN_ERROR:
                fields = {"return_code": 1 if return_code is None else return_code}
                if exception is not None:
                    text, tb = serialize_exception(exception)
                    fields.update(exception=text, traceback=tb)
            changes = [Change(i, src, dst, fields=fields, by=actor(src, dst)) for i in ids]
            moved = await jobs.transition(changes)
            assert moved.all_moved, moved.unmoved
    raise AssertionError(f"jobs {list(job_ids)} did not reach {to}")


async def forget_hooks(store: Store, app_id: int) -> None:
    """Make the app's hooks unknown, as in an app stored without its ``hooks`` list: every
    hook step of its jobs then goes to its consumer, default hook or not."""
    await store.db["apps"].update_one({"_id": app_id}, {"$unset": {"hooks": 1}})


async def running_job(store: Store, session_id: int, *, site_id: int = 1, app_id: int = 1) -> int:
    """A new job RUNNING in launcher session ``session_id``, claimed as a launcher claims."""
    (job,) = await store.jobs.create_many(
        [Job(app_id=app_id, site_id=site_id, workdir=f"running/{session_id}")]
    )
    assert job.id is not None
    await store.db["jobs"].update_one({"_id": job.id}, {"$set": {"state": "PREPROCESSED"}})
    claim = Change(
        job.id, S.PREPROCESSED, S.RUNNING, fields={"session_id": session_id}, by=Actor.LAUNCHER
    )
    await store.jobs.transition([claim])
    return job.id
