"""Batch job repository: creation and state changes, each with its ``batchjob`` event."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import BatchJob, BatchJobState, Event, utcnow
from balsam_mq.errors import NotFound
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import BATCH_JOBS, EVENTS
from balsam_mq.store.transactions import Transactor


class BatchJobRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], tx: Transactor) -> None:
        self._batch_jobs = db[BATCH_JOBS]
        self._events = db[EVENTS]
        self._counters = Counters(db)
        self._tx = tx

    async def create(
        self, batch_job: BatchJob, *, session: AsyncClientSession | None = None
    ) -> BatchJob:
        """Insert a batch job with a ``batchjob.<site>.<state>`` event, in one transaction."""
        new = batch_job.model_copy(
            update={"id": await self._counters.reserve(BATCH_JOBS), "created_at": utcnow()}
        )

        async def body(s: AsyncClientSession) -> BatchJob:
            await self._batch_jobs.insert_one(new.to_doc(), session=s)
            await self._events.insert_one(
                Event(
                    kind="batchjob",
                    site_id=new.site_id,
                    batch_job_id=new.id,
                    to_state=new.state.value,
                    timestamp=new.created_at,
                ).to_doc(),
                session=s,
            )
            return new

        return await self._tx.run(body, session=session)

    async def set_state(
        self,
        ids: Sequence[int],
        state: BatchJobState,
        *,
        fields: dict[str, Any] | None = None,
        expect: Collection[BatchJobState] | None = None,
        session: AsyncClientSession | None = None,
    ) -> list[int]:
        """Move the batch jobs to ``state`` (with ``fields``); returns the ids that changed.

        With ``expect``, only batch jobs currently in one of those states are touched
        (the scheduler service must not undo a user's concurrent deletion request).
        """
        match: dict[str, Any] = {"_id": {"$in": list(ids)}}
        if expect is not None:
            match["state"] = {"$in": [e.value for e in expect]}

        async def body(s: AsyncClientSession) -> list[int]:
            cursor = self._batch_jobs.find(
                {**match, "state": {"$ne": state.value, **match.get("state", {})}},
                {"state": 1, "site_id": 1},
                session=s,
            )
            found = [d async for d in cursor]
            if not found and not fields:
                return []
            now = utcnow()
            await self._batch_jobs.update_many(
                match,
                {"$set": {**(fields or {}), "state": state.value}},
                session=s,
            )
            if found:
                await self._events.insert_many(
                    [
                        Event(
                            kind="batchjob",
                            site_id=d["site_id"],
                            batch_job_id=d["_id"],
                            from_state=d["state"],
                            to_state=state.value,
                            timestamp=now,
                        ).to_doc()
                        for d in found
                    ],
                    session=s,
                )
            return [d["_id"] for d in found]

        return await self._tx.run(body, session=session)

    async def get(self, batch_job_id: int) -> BatchJob:
        doc = await self._batch_jobs.find_one({"_id": batch_job_id})
        if doc is None:
            raise NotFound(f"BatchJob {batch_job_id} does not exist")
        return BatchJob.from_doc(doc)

    async def for_site(
        self, site_id: int | None, states: Collection[BatchJobState] | None = None
    ) -> list[BatchJob]:
        """The site's batch jobs (every site's: ``None``; in ``states`` if given), oldest
        first."""
        match: dict[str, Any] = {} if site_id is None else {"site_id": site_id}
        if states is not None:
            match["state"] = {"$in": [s.value for s in states]}
        return [BatchJob.from_doc(d) async for d in self._batch_jobs.find(match).sort("_id")]
