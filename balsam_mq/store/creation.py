"""Creating jobs: consecutive ids, the state each starts in (READY and on through the steps
with no work, AWAITING_PARENTS, or FAILED), its creation events, in chunked transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import islice, repeat
from typing import Any

import anyio
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from balsam_mq.domain import Actor, App, Change, Job, JobState, utcnow
from balsam_mq.domain.models import THEN
from balsam_mq.domain.pipeline import Step, starting_state, steps as steps_of
from balsam_mq.errors import JobError, StoreError
from balsam_mq.store.counters import SMALL_CREATION, IdBlocks
from balsam_mq.store.event_docs import Doc, event_doc, renewed
from balsam_mq.store.passage import read_apps, work_of
from balsam_mq.store.transactions import Transactor

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


class JobCreation:
    """Creating jobs (part of ``JobRepository``): ids, initial states and creation events,
    in chunked transactions."""

    _jobs: AsyncCollection[Doc]
    _apps: AsyncCollection[Doc]
    _events: AsyncCollection[Doc]
    _ids: IdBlocks
    _tx: Transactor

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
        apps.update(await read_apps(self._apps, {doc["app_id"] for doc in docs} - set(apps), s))
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
                    work_of(apps, app_id, transfers),
                    has_children=False,
                )
                known = (steps[-1], event_doc(site_id, job_id, app_id, 0, steps, now))
                if not state_data:
                    passages[key] = known
            last, event = known
            events.append(renewed(event, job_id))
            doc["_id"] = job_id
            doc["state"] = last.to.value
            doc["state_data"] = dict(last.state_data)
            doc["created_at"] = now
            doc["last_update"] = now
            doc["seq"] = 1 + len(event.get(THEN) or ())  # its steps so far
        await self._jobs.insert_many(docs, session=s)
        await self._events.insert_many(events, session=s)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group's (possibly nested) exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
