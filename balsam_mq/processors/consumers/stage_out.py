"""Consumer for POSTPROCESSED and STAGED_OUT: stages out transfer slots → STAGED_OUT → JOB_FINISHED.

Both moves happen in one pass; the STAGED_OUT event is also consumed, so a job left in
STAGED_OUT by a crash between the two still finishes.
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
        result = await self.ctx.store.jobs.transition(staged)
        finish += [i for i in result.moved if _to(staged, i) == S.STAGED_OUT]
        await self.ctx.store.jobs.transition(
            [Change(i, S.STAGED_OUT, S.JOB_FINISHED, by=Actor.STAGE_OUT) for i in finish]
        )
        return None


def _to(changes: list[Change], job_id: int) -> JobState:
    return next(c.to for c in changes if c.job_id == job_id)
