"""The ``events`` collection read side: a job's history and the site's event log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import Event
from balsam_mq.store.schema import EVENTS

# a job's events in commit order: ObjectIds made by different processes in the same
# second do not sort by time, the job's transition counter does
_JOB_ORDER = [("job_id", ASCENDING), ("seq", ASCENDING), ("_id", ASCENDING)]


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
        cursor = self._events.find({"job_id": job_id}).sort(_JOB_ORDER)
        return [Event.from_doc(d) async for d in cursor]

    async def history(self, job_ids: list[int]) -> dict[int, list[Event]]:
        """Histories of many jobs in one query, each oldest first."""
        out: dict[int, list[Event]] = {i: [] for i in job_ids}
        cursor = self._events.find({"job_id": {"$in": job_ids}}).sort(_JOB_ORDER)
        async for d in cursor:
            out[d["job_id"]].append(Event.from_doc(d))
        return out

    async def count(self, **match: Any) -> int:
        return await self._events.count_documents(match)

    async def iterate(self, **match: Any) -> AsyncIterator[Event]:
        async for d in self._events.find(match).sort([("_id", ASCENDING)]):
            yield Event.from_doc(d)
