"""What all job consumers share: from a batch of events to the jobs still in the expected state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Delivery, Job, JobState, Parked, parked_failures
from balsam_mq.processors.context import AgentContext


@dataclass(frozen=True)
class Pending:
    """A job to act on, the message that announced it and the event's id in it (what a
    deferral of this job names)."""

    job: Job
    delivery: Delivery
    event_id: str

    @property
    def id(self) -> int:
        assert self.job.id is not None
        return self.job.id


class JobConsumer:
    """Base of the per-state consumers: ``handle`` keeps only jobs still in ``accepts``.

    A message about a job that has moved on (a redelivery after a commit, a duplicate
    from a restarted relay) is dropped here: that is what makes consumers idempotent.
    """

    accepts: tuple[JobState, ...] = ()

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    async def handle(self, batch: Sequence[Delivery]) -> Deferrals | None:
        wanted: dict[int, tuple[Delivery, str]] = {}
        for delivery in batch:
            for event in delivery.events():
                if event.job_id is not None and event.to_state in self.accepts:
                    wanted[event.job_id] = (delivery, event.id or delivery.message_id)
        if not wanted:
            return None
        jobs = await self.ctx.store.jobs.get_many(list(wanted))
        pending = [
            Pending(j, *wanted[j.id]) for j in jobs if j.id is not None and j.state in self.accepts
        ]
        if not pending:
            return None
        return await self.process(pending)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        raise NotImplementedError

    async def parked(self, delivery: Delivery, queue: str, error: str) -> None:
        """The message could not be handled: its jobs still waiting here fail, naming why."""
        parked = Parked(delivery.message_id, queue, error)
        changes = parked_failures(delivery.events(), self.accepts, parked)
        if changes:
            await self.ctx.store.jobs.transition(changes)

    async def defer(
        self, deferrals: dict[str, float], p: Pending, state: JobState, note: dict[str, Any]
    ) -> None:
        """Look at ``p`` again after :meth:`backoff`, its ``state_data`` saying why (if the
        job is still in ``state``)."""
        deferrals[p.event_id] = self.backoff(p)
        await self.ctx.store.jobs.update_fields_if(p.id, state, {"state_data": note})

    def backoff(self, p: Pending) -> float:
        """Seconds before ``p`` is looked at again: doubling from ``transfers.retry_initial_s``."""
        t = self.ctx.config.transfers
        return float(min(t.retry_initial_s * 2**p.delivery.deferrals, t.retry_max_s))
