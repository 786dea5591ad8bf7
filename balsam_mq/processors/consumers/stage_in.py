"""Consumer for READY: stages in transfer slots → STAGED_IN (and on through steps with no work).

A job whose input does not exist yet stays READY and its message is deferred with
exponential backoff (``transfers.retry_initial_s`` doubling to ``retry_max_s``): the
job moves on when the data appears. A bad URI or alias fails the job with the reason.
"""

from __future__ import annotations

import anyio

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.errors import BalsamError
from balsam_mq.processors.consumers.base import JobConsumer, Pending
from balsam_mq.processors.transfers import plan


class StageInConsumer(JobConsumer):
    accepts = (JobState.READY,)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        apps = await self.ctx.apps.get_many(p.job.app_id for p in pending)
        locations = self.ctx.config.transfers.locations
        changes: list[Change] = []
        deferrals: dict[str, float] = {}
        for p in pending:
            app = apps.get(p.job.app_id)
            moved = Change(p.id, JobState.READY, JobState.STAGED_IN, by=Actor.STAGE_IN)
            if app is None or not p.job.transfers:
                changes.append(moved)
                continue
            try:
                workdir = self.ctx.site_dir.workdir(p.job.workdir)
                transfers = plan(app.doc, p.job, "in", locations, workdir)
                if not all(proto.available(t) for proto, t in transfers):
                    missing = [str(t.source) for proto, t in transfers if not proto.available(t)]
                    deferrals[p.event_id] = self.backoff(p)
                    await self.ctx.store.jobs.update_fields_if(
                        p.id, JobState.READY, {"state_data": {"waiting_for": missing}}
                    )
                    continue
                for proto, t in transfers:
                    await anyio.to_thread.run_sync(proto.run, t)
            except (BalsamError, OSError) as exc:
                changes.append(
                    Change(
                        p.id,
                        JobState.READY,
                        JobState.FAILED,
                        state_data={"reason": f"stage-in failed: {exc}"},
                        by=Actor.STAGE_IN,
                    )
                )
                continue
            changes.append(moved)
        await self.ctx.store.jobs.transition(changes)
        return deferrals or None
