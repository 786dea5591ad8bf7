"""Consumer for POSTPROCESSED (and STAGED_OUT): stages out → STAGED_OUT → JOB_FINISHED.

STAGED_OUT has no work of its own, so the move to JOB_FINISHED is taken in the same
transaction. A job found in STAGED_OUT (left there by an earlier version) is finished.
"""

from __future__ import annotations

import anyio

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.errors import BalsamError
from balsam_mq.processors.consumers.base import JobConsumer, Pending
from balsam_mq.processors.transfers import plan

S = JobState


class StageOutConsumer(JobConsumer):
    accepts = (S.POSTPROCESSED, S.STAGED_OUT)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        apps = await self.ctx.apps.get_many(p.job.app_id for p in pending)
        locations = self.ctx.config.transfers.locations
        staged: list[Change] = []
        finish = [p.id for p in pending if p.job.state == S.STAGED_OUT]
        for p in pending:
            if p.job.state != S.POSTPROCESSED:
                continue
            app = apps.get(p.job.app_id)
            try:
                if app is not None and p.job.transfers:
                    workdir = self.ctx.site_dir.workdir(p.job.workdir)
                    for proto, t in plan(app.doc, p.job, "out", locations, workdir):
                        if not proto.available(t):
                            raise BalsamError(f"output {t.source} of slot {t.slot!r} is missing")
                        await anyio.to_thread.run_sync(proto.run, t)
            except (BalsamError, OSError) as exc:
                staged.append(
                    Change(
                        p.id,
                        S.POSTPROCESSED,
                        S.FAILED,
                        state_data={"reason": f"stage-out failed: {exc}"},
                        by=Actor.STAGE_OUT,
                    )
                )
                continue
            staged.append(Change(p.id, S.POSTPROCESSED, S.STAGED_OUT, by=Actor.STAGE_OUT))
        await self.ctx.store.jobs.transition(
            [
                *staged,
                *(Change(i, S.STAGED_OUT, S.JOB_FINISHED, by=Actor.STAGE_OUT) for i in finish),
            ]
        )
        return None
