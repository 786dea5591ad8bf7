"""Waiting for job states without sleeping: woken by the events change stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
