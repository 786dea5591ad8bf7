"""Job repository: creation with initial states, reads, and the conditional transition."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import islice, repeat
from typing import Any

import anyio
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import (
    PARKED_KEY,
    Actor,
    App,
    Change,
    Event,
    Job,
    JobState,
    TransitionResult,
    check_transition,
    utcnow,
)
from balsam_mq.domain.models import THEN, blank, plain
from balsam_mq.domain.pipeline import (
    DEFAULT_MOVES,
    REENTRY_CLEARS,
    Step,
    Work,
    reentering,
    restarts_after,
    starting_state,
    steps as steps_of,
)
from balsam_mq.errors import JobError, NotFound, StoreError
from balsam_mq.store.counters import SMALL_CREATION, Counters, IdBlocks
from balsam_mq.store.family import Family
from balsam_mq.store.known import (
    TRANSITION_FIELDS,
    Changed,
    known_of,
    transition_fields,
    update_filter,
)
from balsam_mq.store.schema import APPS, EVENTS, JOBS
from balsam_mq.store.transactions import Transactor

Extra = Callable[[AsyncClientSession], Awaitable[None]]
Doc = dict[str, Any]
Created = Callable[[int, list[Doc]], None]

# jobs created per transaction: a transaction's writes must fit in mongod's cache (a job
# and its creation events with their index entries weigh about 2 KB there)
CREATE_CHUNK = 1_000
# the first transaction of a creation, doubled from one to the next up to CREATE_CHUNK:
# the first jobs of a large submission are runnable while the rest are being written
FIRST_CHUNK = 64
# creation transactions in flight at once: written while the client encodes the next and
# loads the last one's documents into the user's objects (3 beat 2 by 5-10%)
CREATE_IN_FLIGHT = 3

_EVENT = blank(Event, site_id=0, to_state="")  # every field of a job event, in order


# what the passage of a job's steps depends on in its app
_WORK_FIELDS = {"site_id": 1, "name": 1, "hooks": 1, "transfers": 1, "cleanup_files": 1}
_WORK_FIELDS["max_retries"] = 1  # a restart past it fails the job


def _work(apps: Mapping[int, App], app_id: int | None, transfers: Mapping[str, str]) -> Work | None:
    app = apps.get(app_id) if app_id is not None else None
    return None if app is None else Work.of(app, transfers)


def _may_pass(state: JobState) -> bool:
    """Whether a move to ``state`` can depend on the app: a step to pass through, a
    finish whose routing depends on cleanup, or a restart its retry limit may refuse."""
    return state in DEFAULT_MOVES or state in (JobState.JOB_FINISHED, JobState.RESTART_READY)


_DEFAULT_MAX_RETRIES: int = App.model_fields["max_retries"].default


def _max_retries(apps: Mapping[int, App], doc: Mapping[str, Any]) -> int:
    """The job's own retry limit, else its app's."""
    own = doc.get("max_retries")
    if own is not None:
        return int(own)
    app_id = doc.get("app_id")
    app = apps.get(app_id) if app_id is not None else None
    return _DEFAULT_MAX_RETRIES if app is None else app.max_retries


class _EventIds:
    """The ObjectIds of job event documents and their steps, a run of consecutive ones at
    a time (a document's, then its steps', in order), several times cheaper than
    ``ObjectId()`` each: the time, five random bytes of this process's own (drawn again
    in a forked child), and a counter. A process's job events sort by id in the order it
    wrote them."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._random = os.urandom(5)
        self._next = int.from_bytes(os.urandom(3), "big")

    def take(self, n: int) -> list[ObjectId]:
        head = int(time.time()).to_bytes(4, "big") + self._random
        first, self._next = self._next, (self._next + n) % _COUNTER_SPAN
        return [ObjectId(head + ((first + i) % _COUNTER_SPAN).to_bytes(3, "big")) for i in range(n)]


_COUNTER_SPAN = 1 << 24  # an ObjectId's counter has three bytes
_event_ids = _EventIds()


def _event_doc(
    site_id: int, job_id: int, app_id: int | None, seq: int, steps: list[Step], now: Any
) -> Doc:
    """The event document of a job's ``steps`` in one transaction, numbered on from the
    job's ``seq``: the first step's event, the others in its ``then`` list (see
    ``domain.models.THEN``)."""
    first, *later = steps
    doc = dict(_EVENT)
    doc["site_id"] = site_id
    doc["job_id"] = job_id
    doc["app_id"] = app_id
    doc["timestamp"] = now
    doc.update(_step(first, seq + 1))
    doc["_id"], *ids = _event_ids.take(len(steps))  # its events sort in order by id
    if later:
        numbered = enumerate(zip(later, ids, strict=True), start=seq + 2)
        doc[THEN] = [{**_step(step, n), "_id": id_} for n, (step, id_) in numbered]
    return doc


def _step(step: Step, seq: int) -> Doc:
    """The fields of ``step``'s event that a ``then`` entry holds (but ``_id``)."""
    return {
        "from_state": step.from_state.value,
        "to_state": step.to.value,
        "seq": seq,
        "by": None if step.by is None else step.by.value,
        "state_data": plain(step.state_data),
        "quiet": step.quiet,
    }


def _renewed(doc: Doc, job_id: int) -> Doc:
    """The event document ``doc`` for job ``job_id``, with ids of its own."""
    event = doc.copy()
    event["job_id"] = job_id
    then = doc.get(THEN) or []
    event["_id"], *ids = _event_ids.take(1 + len(then))
    if then:
        event[THEN] = [{**step, "_id": id_} for step, id_ in zip(then, ids, strict=True)]
    return event


def _last_parent(docs: Iterable[Doc]) -> int:
    """The highest id among the parents of ``docs`` (0 without any)."""
    return max((p for doc in docs for p in doc["parent_ids"]), default=0)


def chunk_sizes() -> Iterator[int]:
    """The number of jobs in each transaction of a creation, in order (without end)."""
    size = FIRST_CHUNK
    while True:
        yield size
        size = min(2 * size, CREATE_CHUNK)


def _chunks(docs: Iterable[Doc], sizes: Iterable[int]) -> Iterator[list[Doc]]:
    it = iter(docs)
    for size in sizes:
        chunk = list(islice(it, size))
        if not chunk:
            return
        yield chunk


class JobRepository:
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

    async def create_many(
        self,
        jobs: Sequence[Job],
        *,
        session: AsyncClientSession | None = None,
    ) -> list[Job]:
        """Insert new jobs with their creation events, in one transaction: READY (and on,
        through every step with no work: see ``domain.pipeline``), AWAITING_PARENTS, or
        FAILED. See :meth:`create_documents` for ids and parents."""
        if not jobs:
            return []
        for job in jobs:
            if job.id is not None:
                raise JobError(f"Job {job.id} is already saved")
        docs = [job.to_doc() for job in jobs]
        first = await self._ids.take(len(docs), above=_last_parent(docs))
        await self._tx.run(partial(self._create, docs, first, None), session=session)
        return [Job.from_doc(doc) for doc in docs]

    async def create_documents(
        self,
        docs: Iterable[Doc],
        count: int,
        created: Created,
        *,
        apps: Mapping[int, App] | None = None,
        atomic: bool = False,
    ) -> None:
        """Create ``count`` new jobs from their documents (in the form of ``Job.to_doc()``,
        without ``_id``; their fields already checked), with their creation events.

        ``apps`` are the app documents the jobs were checked against, followed for their
        steps with no work instead of being read again (an app missing from it is read):
        the version a client has just synced or resolved is the one its jobs are made for.

        Each job becomes READY (and goes on through every step with no work: see
        ``domain.pipeline``), AWAITING_PARENTS, or FAILED. Their ids are consecutive:
        a small creation's come from the process's block (``counters.IdBlocks``), a
        larger one reserves its own. Each chunk of jobs is one transaction
        (:func:`chunk_sizes`: small first, then up to :data:`CREATE_CHUNK` jobs; with
        ``atomic``, all ``count`` jobs, at most :data:`CREATE_CHUNK`, are one, so that
        all or none are created); up to
        :data:`CREATE_IN_FLIGHT` of them are written at once, and ``docs`` is read one
        chunk ahead of them, so it may be built lazily. When a chunk is written,
        ``created(offset, documents)`` is called with its completed documents (``_id``,
        state, times...) and the position of its first one in ``docs``. If a chunk
        fails, none is started after it; those already started are seen to their end.

        Unfinished parents are touched inside the transaction, so a parent finishing
        concurrently conflicts with this creation and one of the two retries: a child
        never waits on a parent that finished unseen. A child of a parent that is
        already FAILED is created FAILED, naming the parent, as the dependency resolver
        fails the children waiting on it.
        """
        if count < 1:
            if next(iter(docs), None) is not None:
                raise StoreError("create_documents: more documents than the count given")
            return
        if atomic and count > CREATE_CHUNK:
            raise StoreError(f"an atomic creation holds at most {CREATE_CHUNK} jobs, not {count}")
        if count <= SMALL_CREATION:  # read now for its parents (one more is an error below)
            docs = list(islice(docs, count + 1))
            first = await self._ids.take(count, above=_last_parent(docs))
        else:
            first = await self._ids.take(count)
        slots = anyio.Semaphore(CREATE_IN_FLIGHT)

        async def write(offset: int, chunk: list[Doc]) -> None:
            # shielded: once sent, a chunk is seen to its end and reported, even when
            # another one failed (its jobs exist: their objects must have their ids)
            with anyio.CancelScope(shield=True):
                try:
                    await self._tx.run(partial(self._create, chunk, first + offset, apps))
                    created(offset, chunk)
                finally:
                    slots.release()

        offset = 0
        try:
            async with anyio.create_task_group() as tg:
                for chunk in _chunks(docs, repeat(count) if atomic else chunk_sizes()):
                    if offset + len(chunk) > count:
                        raise StoreError("create_documents: more documents than the count given")
                    await slots.acquire()
                    tg.start_soon(write, offset, chunk)
                    offset += len(chunk)
        except BaseExceptionGroup as group:
            raise _first(group) from None
        if offset != count:
            raise StoreError(f"create_documents: {offset} documents for a count of {count}")

    async def _create(
        self,
        docs: list[Doc],
        first: int,
        given: Mapping[int, App] | None,
        s: AsyncClientSession,
    ) -> None:
        """The body of a creation transaction: completes ``docs`` (ids from ``first`` on)
        and inserts them with their events; ``given`` apps are not read."""
        parent_ids = sorted({p for doc in docs for p in doc["parent_ids"]})
        parents: dict[int, tuple[int, JobState, Mapping[str, Any]]] = {}
        if parent_ids:
            cursor = self._jobs.find(
                {"_id": {"$in": parent_ids}}, {"state": 1, "state_data": 1}, session=s
            )
            async for d in cursor:
                parents[d["_id"]] = (d["_id"], JobState(d["state"]), d.get("state_data") or {})
            missing = [p for p in parent_ids if p not in parents]
            if missing:
                raise JobError(f"parent job(s) {missing} do not exist")
            unfinished = [p for p, (_, st, _) in parents.items() if st is not JobState.JOB_FINISHED]
            if unfinished:
                await self._jobs.update_many(
                    {"_id": {"$in": unfinished}, "state": {"$ne": JobState.JOB_FINISHED.value}},
                    {"$set": {"last_child_at": utcnow()}},
                    session=s,
                )
        apps = dict(given or {})
        apps.update(await self._apps_of({doc["app_id"] for doc in docs} - set(apps), s))
        now = utcnow()
        # jobs of one app, with the same transfer slots and no parent in the way, take
        # the same steps: their events differ only in the job id
        passages: dict[tuple[Any, ...], tuple[Step, Doc]] = {}
        events: list[Doc] = []
        for offset, doc in enumerate(docs):
            job_id = first + offset
            app_id, site_id, transfers = doc["app_id"], doc["site_id"], doc["transfers"]
            state, state_data = starting_state([parents[p] for p in doc["parent_ids"]])
            key = (app_id, site_id, tuple(sorted(transfers)), state)
            known = None if state_data else passages.get(key)
            if known is None:
                steps = steps_of(
                    Change(job_id, JobState.CREATED, state, state_data, by=Actor.CLIENT),
                    _work(apps, app_id, transfers),
                    has_children=False,
                )
                known = (steps[-1], _event_doc(site_id, job_id, app_id, 0, steps, now))
                if not state_data:
                    passages[key] = known
            last, event = known
            events.append(_renewed(event, job_id))
            doc["_id"] = job_id
            doc["state"] = last.to.value
            doc["state_data"] = dict(last.state_data)
            doc["created_at"] = now
            doc["last_update"] = now
            doc["seq"] = 1 + len(event.get(THEN) or ())  # its steps so far
        await self._jobs.insert_many(docs, session=s)
        await self._events.insert_many(events, session=s)

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
            if any(_may_pass(c.to) for c in changes):
                followed = apps if apps is not None else await self._apps_of(app_ids, s)
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
                work = _work(followed, doc.get("app_id"), doc.get("transfers") or {})
                has_children = bool(doc.get("last_child_at")) or c.job_id in family.awaited
                if c.job_id in resets:
                    steps = family.reentry(c, doc.get("parent_ids") or (), work, has_children)
                else:
                    steps = steps_of(
                        c,
                        work,
                        has_children=has_children,
                        restarts=int(doc.get("restarts", 0)),
                        max_retries=_max_retries(followed, doc),
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
                    _event_doc(doc["site_id"], c.job_id, doc.get("app_id"), seq, steps, now)
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

    async def _apps_of(self, app_ids: set[Any], s: AsyncClientSession) -> dict[int, App]:
        ids = sorted(i for i in app_ids if i is not None)
        if not ids:
            return {}
        cursor = self._apps.find({"_id": {"$in": ids}}, _WORK_FIELDS, session=s)
        return {d["_id"]: App.from_doc(d) async for d in cursor}

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


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group's (possibly nested) exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
