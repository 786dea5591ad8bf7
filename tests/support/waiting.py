"""Waiting in tests: job states are awaited on the events change stream; ``until`` is
only for conditions nothing announces (files a job writes, a process's log line)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Sequence

from balsam_mq.domain import JobState
from balsam_mq.store import Store
from balsam_mq.store.schema import EVENTS


async def wait_for_states(
    store: Store, ids: Sequence[int], states: Sequence[JobState], timeout: float = 60.0
) -> dict[int, JobState]:
    """Wait until every job is in one of ``states``, woken by the events change stream."""
    wanted = {s.value for s in states}
    ids = list(ids)
    pipeline = [{"$match": {"operationType": "insert", "fullDocument.job_id": {"$in": ids}}}]

    async def watch() -> dict[int, JobState]:
        async with await store.db[EVENTS].watch(pipeline, max_await_time_ms=200) as stream:
            while True:
                found = await store.jobs.states(ids)
                if len(found) == len(ids) and all(s.value in wanted for s in found.values()):
                    return found
                await stream.try_next()

    return await asyncio.wait_for(watch(), timeout)


async def until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 60.0,
    interval: float = 0.05,
) -> None:
    """Check ``predicate`` (plain or async) every ``interval`` s until true; fail after
    ``timeout`` s.

    For conditions with no event to wait on; job states use :func:`wait_for_states`.
    """
    deadline = time.monotonic() + timeout

    async def holds() -> bool:
        value = predicate()
        return bool(await value) if inspect.isawaitable(value) else bool(value)

    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
