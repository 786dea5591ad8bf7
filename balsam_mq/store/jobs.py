"""Job repository: reads, the conditional transition, and creation (``creation.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import (
    PARKED_KEY,
    Actor,
    App,
    Change,
    Job,
    JobState,
    TransitionResult,
    check_transition,
    utcnow,
)
from balsam_mq.domain.pipeline import (
    REENTRY_CLEARS,
    reentering,
    restarts_after,
    steps as steps_of,
)
from balsam_mq.errors import NotFound, StoreError
from balsam_mq.store.counters import Counters, IdBlocks
from balsam_mq.store.creation import JobCreation
from balsam_mq.store.event_docs import Doc, event_doc
from balsam_mq.store.family import Family
from balsam_mq.store.known import (
    TRANSITION_FIELDS,
    Changed,
    known_of,
    transition_fields,
    update_filter,
)
from balsam_mq.store.passage import max_retries_of, may_pass, read_apps, work_of
from balsam_mq.store.schema import APPS, EVENTS, JOBS
from balsam_mq.store.transactions import Transactor

Extra = Callable[[AsyncClientSession], Awaitable[None]]


class JobRepository(JobCreation):
    def __init__(self, db: AsyncDatabase[dict[str, Any]], tx: Transactor) -> None:
        self._jobs = db[JOBS]
        self._apps = db[APPS]
        self._events = db[EVENTS]
        self._ids = IdBlocks(Counters(db), JOBS)
        self._tx = tx

    async def get(self, job_id: int) -> Job:
        doc = await self._jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFound(f"Job {job_id} does not exist")
        return Job.from_doc(doc)

    async def get_many(
        self, job_ids: Sequence[int], *, known: dict[int, Doc] | None = None
    ) -> list[Job]:
        """The jobs with these ids, in the given order; missing ids are skipped.

        ``known``: filled with what a transition decides on of each job, as read (the
        ``known`` of a change that follows: see :meth:`transition`)."""
        by_id = {}
        async for d in self._jobs.find({"_id": {"$in": list(job_ids)}}):
            if known is not None:
                known[d["_id"]] = transition_fields(d)
            by_id[d["_id"]] = Job.from_doc(d)
        return [by_id[i] for i in job_ids if i in by_id]

    async def states(self, job_ids: Sequence[int]) -> dict[int, JobState]:
        cursor = self._jobs.find({"_id": {"$in": list(job_ids)}}, {"state": 1})
        return {d["_id"]: JobState(d["state"]) async for d in cursor}

    async def transition(
        self,
        changes: Sequence[Change],
        *,
        apps: Mapping[int, App] | None = None,
        session: AsyncClientSession | None = None,
        extra: Extra | None = None,
    ) -> TransitionResult:
        """Apply ``changes`` in one transaction, each only if its job is still in ``expect``.

        Every legal change whose job is in the expected state moves and gets one
        ``events`` row; every following step with no work (``domain.pipeline``, read
        from the job and its app in the same snapshot) is passed through in the same
        transaction, with its default move and its own event. ``apps`` are the app
        documents to follow instead of reading them (a launcher reporting runs passes
        the versions the jobs ran with). The others are reported in ``unmoved`` with the
        state found.
        ``extra`` runs inside the same transaction (hook-created jobs, app writes...).

        When every change of a batch of at most ``known.KNOWN_MAX`` carries ``known``
        (what :meth:`get_many` or the ``after`` of a transition gave) and no ``session``
        is given, the jobs are not read: each update applies only if its job still has
        every field as known, and if one has changed since, the transaction is dropped
        and the batch read and decided again.
        An illegal change raises :class:`InvalidTransition` before anything is written.

        A user's reset (``pipeline.reentering``) goes where its parents, read in the same
        snapshot (or as this batch leaves them: jobs are taken in id order, parents
        first), let it (``pipeline.reentry_steps``), and drops what its last run left.
        A parent it waits for, and a reset job that children wait for, get
        ``last_child_at`` so that their end reaches the resolver; a parent finishing
        concurrently conflicts with the reset, as with a creation.
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

        resets = {c.job_id for c in changes if reentering(c)}
        order = sorted(changes, key=lambda c: c.job_id) if resets else changes
        known = None if session is not None or resets else known_of(changes)

        async def body(known: Mapping[int, Doc] | None, s: AsyncClientSession) -> TransitionResult:
            if known is None:
                cursor = self._jobs.find({"_id": {"$in": ids}}, TRANSITION_FIELDS, session=s)
                current = {d["_id"]: d async for d in cursor}
            else:  # each update below applies only if its job is still as known
                current = dict(known)
            app_ids = {current[c.job_id].get("app_id") for c in changes if c.job_id in current}
            followed: Mapping[int, App] = {}
            if any(may_pass(c.to) for c in changes):
                followed = apps if apps is not None else await read_apps(self._apps, app_ids, s)
            family = await Family.load(self._jobs, resets, current, s)
            now = utcnow()
            ops: list[UpdateOne] = []
            events: list[Doc] = []
            moved: list[int] = []
            final: dict[int, JobState] = {}
            unmoved: dict[int, JobState | None] = {}
            after: dict[int, Doc] = {}
            for c in order:
                doc = current.get(c.job_id)
                if (
                    doc is None
                    or doc["state"] != c.expect
                    or (c.held_by is not None and doc.get("session_id") != c.held_by)
                ):
                    unmoved[c.job_id] = None if doc is None else JobState(doc["state"])
                    continue
                work = work_of(followed, doc.get("app_id"), doc.get("transfers") or {})
                has_children = bool(doc.get("last_child_at")) or c.job_id in family.awaited
                if c.job_id in resets:
                    steps = family.reentry(c, doc.get("parent_ids") or (), work, has_children)
                else:
                    steps = steps_of(
                        c,
                        work,
                        has_children=has_children,
                        restarts=int(doc.get("restarts", 0)),
                        max_retries=max_retries_of(followed, doc),
                    )
                family.moved(c.job_id, steps[-1])
                seq = int(doc.get("seq", 0))
                fields = {
                    **(REENTRY_CLEARS if c.job_id in resets else {}),
                    **c.fields,
                    "state": steps[-1].to.value,
                    "state_data": steps[-1].state_data,
                    "last_update": now,
                    "seq": seq + len(steps),
                    "restarts": restarts_after(steps, int(doc.get("restarts", 0))),
                }
                # after a read, by id alone: the job was read in this transaction's
                # snapshot, in the state (and session) expected, and a write by anyone
                # since makes this update a write conflict, which runs the whole body
                # again. MongoDB finds a job by id alone without planning the query (a
                # third of an update's cost with the state in the filter). Without a
                # read, by every field read would have given: one round trip less
                ops.append(UpdateOne(update_filter(c.job_id, known), {"$set": fields}))
                after[c.job_id] = transition_fields({**doc, **fields})
                events.append(
                    event_doc(doc["site_id"], c.job_id, doc.get("app_id"), seq, steps, now)
                )
                moved.append(c.job_id)
                final[c.job_id] = steps[-1].to
            if ops:
                result = await self._jobs.bulk_write(ops, ordered=False, session=s)
                if result.matched_count != len(ops) and known is not None:
                    raise Changed  # some job changed since it was known: read them
                if result.matched_count != len(ops):
                    raise StoreError(
                        f"transition matched {result.matched_count} of {len(ops)} jobs "
                        "inside one snapshot"
                    )
                await self._events.insert_many(events, session=s)
            if family.awaited:
                await self._jobs.update_many(
                    {
                        "_id": {"$in": sorted(family.awaited)},
                        "state": {"$ne": JobState.JOB_FINISHED.value},
                    },
                    {"$set": {"last_child_at": now}},
                    session=s,
                )
            if extra is not None:
                await extra(s)
            for job_id in family.awaited:
                after.pop(job_id, None)
            return TransitionResult(moved=moved, unmoved=unmoved, final=final, after=after)

        if known is not None:
            with contextlib.suppress(Changed):
                return await self._tx.run(partial(body, known))
        return await self._tx.run(partial(body, None), session=session)

    async def replay_parked(self, message_ids: Sequence[str]) -> dict[str, list[int]]:
        """Return the jobs failed because one of ``message_ids`` was parked to the state
        they were parked in (one event each, so their step's consumer gets them again);
        the ids moved, by message."""
        key = f"state_data.{PARKED_KEY}"
        cursor = self._jobs.find(
            {"state": JobState.FAILED.value, f"{key}.message": {"$in": list(message_ids)}},
            {"_id": 1, key: 1},
        )
        marks = {d["_id"]: d["state_data"][PARKED_KEY] async for d in cursor}
        changes = [
            Change(
                job_id,
                JobState.FAILED,
                JobState(mark["from"]),
                state_data={"replayed": mark["message"]},
                by=Actor.REPLAY,
            )
            for job_id, mark in marks.items()
        ]
        result = await self.transition(changes)
        moved: dict[str, list[int]] = {}
        for job_id in result.moved:
            moved.setdefault(marks[job_id]["message"], []).append(job_id)
        return moved

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

    async def sessions_running(self, site_id: int) -> list[int]:
        """The sessions that RUNNING jobs of the site are recorded as running in."""
        ids = await self._jobs.distinct(
            "session_id", {"site_id": site_id, "state": JobState.RUNNING.value}
        )
        return sorted(i for i in ids if i is not None)

    async def running_counts(self, session_ids: Sequence[int]) -> dict[int, int]:
        """How many RUNNING jobs each of ``session_ids`` holds (absent: none)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"session_id": {"$in": list(session_ids)}, "state": JobState.RUNNING.value}},
            {"$group": {"_id": "$session_id", "n": {"$sum": 1}}},
        ]
        cursor = await self._jobs.aggregate(pipeline)
        return {d["_id"]: d["n"] async for d in cursor}

    async def running_in_sessions(self, session_ids: Sequence[int]) -> list[Job]:
        cursor = self._jobs.find(
            {"session_id": {"$in": list(session_ids)}, "state": JobState.RUNNING.value}
        )
        return [Job.from_doc(d) async for d in cursor]
