"""Jobs as futures: waiting for JOB_FINISHED / FAILED on events, never by polling.

Every wait subscribes to the finished-job events of the jobs' sites *first*, then
reads the jobs once; from then on it only re-reads the jobs an event names. A job
that finished before the subscription is found by that first read, one that finishes
after it is announced: none is missed. A relay (part of every site agent)
must be running for events to flow.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import anyio

from balsam_mq.domain import JobState
from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.errors import JobError, NotFound, Unavailable
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.progress import ShowProgress, wait_progress
from balsam_mq.sdk.view import JobView

log = logging.getLogger(__name__)

J = TypeVar("J", bound=JobView)

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ReturnWhen = Literal["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]


class DoneAndNotDone(NamedTuple, Generic[J]):
    done: list[J]
    not_done: list[J]


async def completions(jobs: Sequence[J], timeout: float | None) -> AsyncGenerator[list[J], None]:
    """Batches of ``jobs`` (refreshed in place) as they reach a final state.

    Ends when all are final, or silently when ``timeout`` seconds have passed.
    """
    pending: dict[int, list[J]] = {}
    for job in jobs:
        if job.id is None or job.site_id is None:
            raise JobError(f"{job._label()} is not saved: save it before waiting for it")
        pending.setdefault(job.id, []).append(job)
    if not pending:
        return
    client = await get_client()
    deadline = None if timeout is None else anyio.current_time() + timeout
    watch = await client.backend.watch_finished(
        list(pending), {j.site_id for j in jobs if j.site_id is not None}
    )
    try:
        check: set[int] | None = set(pending)
        while pending:
            wanted = sorted(check if check is not None else pending)
            found = await _read(client, wanted, deadline)
            if found is None:  # the store stayed out of reach until the deadline
                return
            by_id = {d.id: d for d in found}
            done: list[J] = []
            for job_id in sorted(check if check is not None else set(pending)):
                if job_id not in pending:
                    continue
                doc = by_id.get(job_id)
                if doc is None:
                    raise NotFound(f"Job {job_id} was deleted while being waited for")
                if doc.state in TERMINAL_STATES:
                    for job in pending.pop(job_id):
                        job._load(doc)
                        done.append(job)
            if done:
                yield done
            check = set()
            while pending and not check:
                remaining = None if deadline is None else deadline - anyio.current_time()
                if remaining is not None and remaining <= 0:
                    return
                got: set[int] | None = set()
                with anyio.move_on_after(remaining):
                    got = await watch.next()
                check = None if got is None else got & pending.keys()
                if check is None:
                    break
    finally:
        watch.close()


async def _read(client: Client, job_ids: list[int], deadline: float | None) -> list[Any] | None:
    """The jobs, read again and again while the store cannot be reached (a restart, an
    election): a wait outlives an outage. ``None`` if the deadline passes first."""
    pause = 0.2
    warned = False
    while True:
        try:
            return await client.backend.get_jobs(job_ids)
        except Unavailable as exc:
            if not warned:
                log.warning("waiting for jobs: %s; trying again until it answers", exc)
                warned = True
        if deadline is not None and anyio.current_time() + pause > deadline:
            return None
        await anyio.sleep(pause)
        pause = min(pause * 2, 5.0)


async def wait_one(job: JobView, timeout: float | None) -> None:
    """Until ``job`` is final (refreshed in place); ``TimeoutError`` after ``timeout`` s."""
    async with aclosing(completions([job], timeout)) as batches:
        async for _ in batches:
            return
    raise TimeoutError(f"{job._label()} did not finish within {timeout} s")


async def wait(
    jobs: Sequence[J], return_when: ReturnWhen = "ALL_COMPLETED", timeout: float | None = None
) -> DoneAndNotDone[J]:
    """Like ``concurrent.futures.wait``: ``(done, not_done)`` once ``return_when`` holds or
    ``timeout`` seconds have passed (no error on timeout)."""
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(
            f"return_when must be one of {ALL_COMPLETED}, {FIRST_COMPLETED}, "
            f"{FIRST_EXCEPTION}; got {return_when!r}"
        )
    jobs = list(jobs)
    finished: set[int] = set()
    async with aclosing(completions(jobs, timeout)) as batches:
        async for batch in batches:
            finished.update(id(j) for j in batch)
            if return_when == FIRST_COMPLETED:
                break
            if return_when == FIRST_EXCEPTION and any(j.state == JobState.FAILED for j in batch):
                break
    return DoneAndNotDone(
        [j for j in jobs if id(j) in finished], [j for j in jobs if id(j) not in finished]
    )


async def as_completed(
    jobs: Sequence[J], timeout: float | None = None, *, progress: ShowProgress = False
) -> AsyncGenerator[J, None]:
    """Each job as it reaches a final state; ``TimeoutError`` if some are still unfinished
    after ``timeout`` seconds. ``progress``: a bar on stderr (``sdk/progress.py``)."""
    jobs = list(jobs)
    seen = 0
    with wait_progress(len(jobs), progress) as ended:
        async with aclosing(completions(jobs, timeout)) as batches:
            async for batch in batches:
                for job in batch:
                    seen += 1
                    ended(job)
                    yield job
    if seen < len(jobs):
        raise TimeoutError(f"{len(jobs) - seen} of {len(jobs)} jobs unfinished after {timeout} s")
