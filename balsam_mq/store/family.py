"""Resets inside one transition: the parents of the jobs being reset, as the batch leaves them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from balsam_mq.domain import Change, JobState
from balsam_mq.domain.pipeline import Step, Work, reentry_steps

S = JobState


class Family:
    """The parents of the jobs a transition resets (``pipeline.reentering``), updated as the
    batch moves them, and ``awaited``: the jobs whose end a child waits for, which get
    ``last_child_at`` in the same transaction so that their end reaches the resolver (a
    parent a reset job now waits for; a reset job that children already wait for)."""

    def __init__(
        self, parents: dict[int, tuple[JobState, Mapping[str, Any]]], awaited: set[int]
    ) -> None:
        self._parents = parents
        self.awaited = awaited

    @classmethod
    async def load(
        cls,
        jobs: AsyncCollection[dict[str, Any]],
        resets: set[int],
        current: Mapping[int, Mapping[str, Any]],
        s: AsyncClientSession,
    ) -> Family:
        """Read in the transaction ``s``: ``current`` are the documents of the batch's jobs."""
        if not resets:
            return cls({}, set())
        parent_ids = sorted(
            {p for j in resets if j in current for p in current[j].get("parent_ids") or ()}
        )
        parents: dict[int, tuple[JobState, Mapping[str, Any]]] = {}
        if parent_ids:
            cursor = jobs.find(
                {"_id": {"$in": parent_ids}}, {"state": 1, "state_data": 1}, session=s
            )
            async for d in cursor:
                parents[d["_id"]] = (JobState(d["state"]), d.get("state_data") or {})
        waited = await jobs.distinct(
            "parent_ids",
            {"parent_ids": {"$in": sorted(resets)}, "state": S.AWAITING_PARENTS.value},
            session=s,
        )
        return cls(parents, {p for p in waited if p in resets})

    def reentry(
        self, change: Change, parent_ids: Sequence[int], work: Work | None, has_children: bool
    ) -> list[Step]:
        """The steps of a reset, by the rule of ``pipeline.reentry_steps``."""
        # a parent deleted since imposes nothing
        parents = [(p, *self._parents[p]) for p in parent_ids if p in self._parents]
        steps = reentry_steps(change, parents, work, has_children=has_children)
        if steps[-1].to is S.AWAITING_PARENTS:
            self.awaited.update(p for p, state, _ in parents if state is not S.JOB_FINISHED)
        return steps

    def moved(self, job_id: int, last: Step) -> None:
        """A job of the batch moved: its children later in the batch see where it went."""
        if job_id in self._parents:
            self._parents[job_id] = (last.to, last.state_data)
