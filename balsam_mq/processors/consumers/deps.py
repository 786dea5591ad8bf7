"""Consumer of ``<ns>.deps`` (JOB_FINISHED and FAILED of every site): the dependency resolver.

A child in AWAITING_PARENTS becomes READY when all its parents are JOB_FINISHED (and
passes through the steps after READY that have no work, like a new job). When
a parent ends FAILED its waiting children fail with ``state_data`` naming it (and the
first failed ancestor); their own FAILED events fail their children in turn, so a
broken DAG ends instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import Sequence

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, Delivery, JobState, Parked
from balsam_mq.store import Store

S = JobState


class DependencyResolver:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(self, batch: Sequence[Delivery]) -> Deferrals | None:
        ended = {e.job_id for d in batch for e in d.events() if e.job_id is not None}
        if not ended:
            return None
        children = await self.store.jobs.children_awaiting(sorted(ended))
        if not children:
            return None
        parent_ids = sorted({p for c in children for p in c.parent_ids})
        parents = {j.id: j for j in await self.store.jobs.get_many(parent_ids)}
        changes: list[Change] = []
        for child in children:
            assert child.id is not None
            failed = [p for p in child.parent_ids if parents[p].state == S.FAILED]
            if failed:
                parent = parents[failed[0]]
                ancestor = parent.state_data.get("failed_ancestor", parent.id)
                changes.append(
                    Change(
                        child.id,
                        S.AWAITING_PARENTS,
                        S.FAILED,
                        state_data={
                            "reason": f"parent job {parent.id} failed",
                            "failed_parent": parent.id,
                            "failed_ancestor": ancestor,
                        },
                        by=Actor.RESOLVER,
                    )
                )
            elif all(parents[p].state == S.JOB_FINISHED for p in child.parent_ids):
                changes.append(Change(child.id, S.AWAITING_PARENTS, S.READY, by=Actor.RESOLVER))
        await self.store.jobs.transition(changes)
        return None

    async def parked(self, delivery: Delivery, queue: str, error: str) -> None:
        """Dependencies could not be released: the children waiting on these parents fail,
        naming why (replaying the message returns them to AWAITING_PARENTS)."""
        ended = sorted({e.job_id for e in delivery.events() if e.job_id is not None})
        children = await self.store.jobs.children_awaiting(ended)
        parked = Parked(delivery.message_id, queue, error)
        await self.store.jobs.transition(
            [
                parked.failure(child.id, S.AWAITING_PARENTS, Actor.RESOLVER)
                for child in children
                if child.id is not None
            ]
        )
