"""Job repository: creation with initial states, reads, and the conditional transition."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import (
    Actor,
    Change,
    Event,
    Job,
    JobState,
    TransitionResult,
    check_transition,
    utcnow,
)
from balsam_mq.errors import JobError, NotFound, StoreError
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import EVENTS, JOBS
from balsam_mq.store.transactions import Transactor

Extra = Callable[[AsyncClientSession], Awaitable[None]]


class JobRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], tx: Transactor) -> None:
        self._jobs = db[JOBS]
        self._events = db[EVENTS]
        self._counters = Counters(db)
        self._tx = tx

    async def get(self, job_id: int) -> Job:
        doc = await self._jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFound(f"Job {job_id} does not exist")
        return Job.from_doc(doc)

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        """The jobs with these ids, in the given order; missing ids are skipped."""
        by_id = {
            d["_id"]: Job.from_doc(d)
            async for d in self._jobs.find({"_id": {"$in": list(job_ids)}})
        }
        return [by_id[i] for i in job_ids if i in by_id]

    async def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        cursor = self._jobs.find({"_id": {"$in": list(job_ids)}}, {"state": 1})
        return {d["_id"]: JobState(d["state"]) async for d in cursor}

    async def create_many(
        self, jobs: Sequence[Job], *, session: AsyncClientSession | None = None
    ) -> list[Job]:
        """Insert new jobs, each READY or AWAITING_PARENTS, with their CREATED events.

        Ids come from one block reservation. Unfinished parents are touched inside the
        transaction, so a parent finishing concurrently conflicts with this creation
        and one of the two retries: a child never waits on a parent that finished
        unseen. A child of a parent that is already FAILED is created FAILED, naming
        the parent, as the dependency resolver fails the children waiting on it.
        """
        if not jobs:
            return []
        for job in jobs:
            if job.id is not None:
                raise JobError(f"Job {job.id} is already saved")
        first = await self._counters.reserve(JOBS, len(jobs))
        parent_ids = sorted({p for job in jobs for p in job.parent_ids})

        async def body(s: AsyncClientSession) -> list[Job]:
            parent_states: dict[int, str] = {}
            ancestors: dict[int, int] = {}  # failed parent -> the first failed ancestor
            if parent_ids:
                cursor = self._jobs.find(
                    {"_id": {"$in": parent_ids}}, {"state": 1, "state_data": 1}, session=s
                )
                async for d in cursor:
                    parent_states[d["_id"]] = d["state"]
                    if d["state"] == JobState.FAILED:
                        ancestors[d["_id"]] = (d.get("state_data") or {}).get(
                            "failed_ancestor", d["_id"]
                        )
                missing = [p for p in parent_ids if p not in parent_states]
                if missing:
                    raise JobError(f"parent job(s) {missing} do not exist")
                unfinished = [p for p, st in parent_states.items() if st != JobState.JOB_FINISHED]
                if unfinished:
                    await self._jobs.update_many(
                        {"_id": {"$in": unfinished}, "state": {"$ne": JobState.JOB_FINISHED.value}},
                        {"$set": {"last_child_at": utcnow()}},
                        session=s,
                    )
            now = utcnow()
            created: list[Job] = []
            events: list[dict[str, Any]] = []
            for offset, job in enumerate(jobs):
                waiting = any(parent_states[p] != JobState.JOB_FINISHED for p in job.parent_ids)
                state = JobState.AWAITING_PARENTS if waiting else JobState.READY
                state_data: dict[str, Any] = {}
                failed = [p for p in job.parent_ids if p in ancestors]
                if failed:
                    state = JobState.FAILED
                    state_data = {
                        "reason": f"parent job {failed[0]} failed",
                        "failed_parent": failed[0],
                        "failed_ancestor": ancestors[failed[0]],
                    }
                new = job.model_copy(
                    update={
                        "id": first + offset,
                        "state": state,
                        "state_data": state_data,
                        "created_at": now,
                        "last_update": now,
                        "seq": 1,
                    }
                )
                created.append(new)
                events.append(
                    Event(
                        site_id=new.site_id,
                        job_id=new.id,
                        app_id=new.app_id,
                        from_state=JobState.CREATED,
                        to_state=state,
                        seq=1,
                        by=Actor.CLIENT,
                        timestamp=now,
                        state_data=state_data,
                    ).to_doc()
                )
            await self._jobs.insert_many([j.to_doc() for j in created], session=s)
            await self._events.insert_many(events, session=s)
            return created

        return await self._tx.run(body, session=session)

    async def transition(
        self,
        changes: Sequence[Change],
        *,
        session: AsyncClientSession | None = None,
        extra: Extra | None = None,
    ) -> TransitionResult:
        """Apply ``changes`` in one transaction, each only if its job is still in ``expect``.

        Every legal change whose job is in the expected state moves and gets one
        ``events`` row; the others are reported in ``unmoved`` with the state found.
        ``extra`` runs inside the same transaction (hook-created jobs, app writes...).
        An illegal change raises :class:`InvalidTransition` before anything is written.
        """
        seen: set[int] = set()
        for c in changes:
            check_transition(c.job_id, c.expect, c.to, c.by)
            if c.job_id in seen:
                raise StoreError(f"Job {c.job_id} appears twice in one transition batch")
            seen.add(c.job_id)
        if not changes:
            return TransitionResult(moved=[], unmoved={})
        ids = [c.job_id for c in changes]

        async def body(s: AsyncClientSession) -> TransitionResult:
            cursor = self._jobs.find(
                {"_id": {"$in": ids}}, {"state": 1, "site_id": 1, "app_id": 1, "seq": 1}, session=s
            )
            current = {d["_id"]: d async for d in cursor}
            now = utcnow()
            ops: list[UpdateOne] = []
            events: list[dict[str, Any]] = []
            moved: list[int] = []
            unmoved: dict[int, JobState | None] = {}
            for c in changes:
                doc = current.get(c.job_id)
                if doc is None or doc["state"] != c.expect:
                    unmoved[c.job_id] = None if doc is None else JobState(doc["state"])
                    continue
                seq = int(doc.get("seq", 0)) + 1
                fields = {
                    **c.fields,
                    "state": c.to.value,
                    "state_data": c.state_data,
                    "last_update": now,
                    "seq": seq,
                }
                ops.append(UpdateOne({"_id": c.job_id, "state": c.expect.value}, {"$set": fields}))
                events.append(
                    Event(
                        site_id=doc["site_id"],
                        job_id=c.job_id,
                        app_id=doc.get("app_id"),
                        from_state=c.expect,
                        to_state=c.to,
                        seq=seq,
                        by=c.by,
                        timestamp=now,
                        state_data=c.state_data,
                    ).to_doc()
                )
                moved.append(c.job_id)
            if ops:
                result = await self._jobs.bulk_write(ops, ordered=False, session=s)
                if result.matched_count != len(ops):
                    raise StoreError(
                        f"transition matched {result.matched_count} of {len(ops)} jobs "
                        "inside one snapshot"
                    )
                await self._events.insert_many(events, session=s)
            if extra is not None:
                await extra(s)
            return TransitionResult(moved=moved, unmoved=unmoved)

        return await self._tx.run(body, session=session)

    async def children_awaiting(self, parent_ids: Sequence[int]) -> list[Job]:
        """Jobs in AWAITING_PARENTS that list any of ``parent_ids`` as a parent."""
        cursor = self._jobs.find(
            {"parent_ids": {"$in": list(parent_ids)}, "state": JobState.AWAITING_PARENTS.value}
        )
        return [Job.from_doc(d) async for d in cursor]

    async def update_fields_if(self, job_id: int, expect: JobState, fields: dict[str, Any]) -> bool:
        """Write ``fields`` (never ``state``) only if the job is still in ``expect``."""
        if "state" in fields:
            raise StoreError("state changes go through transition()")
        result = await self._jobs.update_one(
            {"_id": job_id, "state": expect.value}, {"$set": {**fields, "last_update": utcnow()}}
        )
        return result.modified_count == 1

    async def running_in_sessions(self, session_ids: Sequence[int]) -> list[Job]:
        cursor = self._jobs.find(
            {"session_id": {"$in": list(session_ids)}, "state": JobState.RUNNING.value}
        )
        return [Job.from_doc(d) async for d in cursor]
