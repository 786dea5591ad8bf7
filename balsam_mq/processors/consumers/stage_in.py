"""Consumer for READY: stages in transfer slots → STAGED_IN (and on through steps with no work).

The slots of the whole batch move together, one transfer per location
(``consumers.staging``). A job whose input does not exist yet stays READY and its
message is deferred with exponential backoff (``transfers.retry_initial_s`` doubling to
``retry_max_s``): the job moves on when the data appears. A slot that fails is retried
the same way, ``transfers.max_attempts`` times at most; then, like a bad URI or alias,
it fails the job with the reason.
"""

from __future__ import annotations

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.processors.consumers.base import JobConsumer, Pending
from balsam_mq.processors.consumers.staging import stage

S = JobState


class StageInConsumer(JobConsumer):
    accepts = (S.READY,)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        verdict = await stage(self.ctx, pending, "in")
        by_id = {p.id: p for p in pending}
        changes = [Change(i, S.READY, S.STAGED_IN, by=Actor.STAGE_IN) for i in verdict.done]
        changes += [
            Change(i, S.READY, S.FAILED, {"reason": f"stage-in failed: {why}"}, by=Actor.STAGE_IN)
            for i, why in verdict.failed.items()
        ]
        deferrals: dict[str, float] = {}
        for job_id, missing in verdict.waiting.items():
            await self.defer(deferrals, by_id[job_id], S.READY, {"waiting_for": missing})
        for job_id, errors in verdict.retrying.items():
            await self.defer(deferrals, by_id[job_id], S.READY, {"stage_in_retrying": errors})
        await self.ctx.store.jobs.transition(changes)
        return deferrals or None
