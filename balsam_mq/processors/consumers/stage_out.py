"""Consumer for POSTPROCESSED (and STAGED_OUT): stages out → STAGED_OUT → JOB_FINISHED.

The slots of the whole batch move together, one transfer per location
(``consumers.staging``). A missing output fails its job at once; a slot that fails to
move is retried with the consumer's backoff, ``transfers.max_attempts`` times at most,
then fails the job with the reason. STAGED_OUT has no work of its own, so the move to
JOB_FINISHED is taken in the same transaction. A job found in STAGED_OUT (left there
by an earlier version) is finished.
"""

from __future__ import annotations

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.processors.consumers.base import JobConsumer, Pending
from balsam_mq.processors.consumers.staging import stage

S = JobState


class StageOutConsumer(JobConsumer):
    accepts = (S.POSTPROCESSED, S.STAGED_OUT)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        finish = [p.id for p in pending if p.job.state == S.STAGED_OUT]
        staging = [p for p in pending if p.job.state == S.POSTPROCESSED]
        verdict = await stage(self.ctx, staging, "out")
        by_id = {p.id: p for p in staging}
        changes = [
            Change(i, S.POSTPROCESSED, S.STAGED_OUT, by=Actor.STAGE_OUT) for i in verdict.done
        ]
        changes += [
            Change(
                i,
                S.POSTPROCESSED,
                S.FAILED,
                {"reason": f"stage-out failed: {why}"},
                by=Actor.STAGE_OUT,
            )
            for i, why in verdict.failed.items()
        ]
        changes += [Change(i, S.STAGED_OUT, S.JOB_FINISHED, by=Actor.STAGE_OUT) for i in finish]
        deferrals: dict[str, float] = {}
        for job_id, errors in verdict.retrying.items():
            note = {"stage_out_retrying": errors}
            await self.defer(deferrals, by_id[job_id], S.POSTPROCESSED, note)
        await self.ctx.store.jobs.transition(changes)
        return deferrals or None
