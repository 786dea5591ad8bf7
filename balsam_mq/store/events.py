"""The ``events`` collection read side: a job's history and the site's event log.

A stored document holds a job's steps of one transaction (``domain.models.THEN``); every
read here gives events, one per step, in the order they happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import Event
from balsam_mq.domain.models import STEP_FIELDS, THEN, expand_event_doc
from balsam_mq.store.schema import EVENTS

# a job's events in commit order: ObjectIds made by different processes in the same
# second do not sort by time, the job's transition counter does
_JOB_ORDER = [("job_id", ASCENDING), ("seq", ASCENDING), ("_id", ASCENDING)]


def unfold(*, reverse: bool = False) -> list[dict[str, Any]]:
    """Aggregation stages that turn stored documents into events, one per step, each
    document's in the order they happened (``reverse``: the other way round)."""
    steps: dict[str, Any] = {"$concatArrays": [[{}], {"$ifNull": [f"${THEN}", []]}]}
    if reverse:
        steps = {"$reverseArray": steps}
    return [
        {"$set": {"_step": steps}},
        {"$unwind": "$_step"},
        {"$replaceWith": {"$mergeObjects": ["$$ROOT", "$_step"]}},
        {"$unset": ["_step", THEN]},
    ]


def stored_match(clauses: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A filter of stored documents that holds for every document with a step meeting
    ``clauses`` (``{field: condition}`` filters of events, each positive: an ``$ne``
    would not hold for the document of a step it holds for): a step's own fields are
    looked for in the document's later steps too."""
    out = [
        {"$or": [dict(c), {f"{THEN}.{key}": value for key, value in c.items()}]}
        if set(c) & set(STEP_FIELDS)
        else dict(c)
        for c in clauses
    ]
    return {"$and": out} if out else {}


class EventRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._events = db[EVENTS]

    async def insert(
        self, events: list[Event], *, session: AsyncClientSession | None = None
    ) -> None:
        """Append non-job events (app synced, batch job state) to the outbox."""
        if events:
            await self._events.insert_many([e.to_doc() for e in events], session=session)

    async def for_job(self, job_id: int) -> list[Event]:
        """The job's history, oldest first."""
        return (await self.history([job_id]))[job_id]

    async def history(self, job_ids: list[int]) -> dict[int, list[Event]]:
        """Histories of many jobs in one query, each oldest first."""
        out: dict[int, list[Event]] = {i: [] for i in job_ids}
        cursor = self._events.find({"job_id": {"$in": job_ids}}).sort(_JOB_ORDER)
        async for d in cursor:
            out[d["job_id"]].extend(Event.from_doc(e) for e in expand_event_doc(d))
        return out

    async def count(self, **match: Any) -> int:
        """How many events have the values in ``match``."""
        pipeline = [*self._matching(match), {"$count": "n"}]
        async for d in await self._events.aggregate(pipeline):
            return int(d["n"])
        return 0

    async def iterate(self, **match: Any) -> AsyncIterator[Event]:
        """The events with the values in ``match``, in the order they were stored."""
        pipeline = [*self._matching(match)]
        pipeline.insert(1, {"$sort": {"_id": ASCENDING}})
        async for d in await self._events.aggregate(pipeline):
            yield Event.from_doc(d)

    @staticmethod
    def _matching(match: Mapping[str, Any]) -> list[dict[str, Any]]:
        clauses = [{key: value} for key, value in match.items()]
        return [{"$match": stored_match(clauses)}, *unfold(), {"$match": dict(match)}]
