"""The outbox relay: tails the ``events`` change stream and publishes every event to RabbitMQ.

Every state change is committed together with its ``events`` row; this relay is the
only bridge from those rows to the broker. It publishes a batch with publisher
confirms and only then saves the change-stream resume token of the batch's last
event, so a relay killed at any moment resumes from its last confirmed batch:
events may be published twice (consumers are idempotent), never lost.

Relays of one name (the default one, in every site agent) share a lease in
``relay_state``: one publishes, the others stand by and take over when its lease runs
out (``lease_s``: a relay that dies is replaced within that time; a relay that stops
hands over at once). Any number of them is safe, and costs no duplicate messages.

One task tails the stream into a bounded queue; another publishes whatever has
arrived (up to ``batch_size``): one event at once when events trickle in, hundreds per
batch under load, with no clock in between. Consecutive events of one routing key
travel in one message; runnable jobs, which launchers share, at most
``broker.topology.SHARED_MAX`` to a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import Any

import anyio
from aio_pika.abc import AbstractConnection
from pymongo.errors import PyMongoError

from balsam_mq.broker import (
    Outgoing,
    Publisher,
    Topology,
    close_channel,
    connection_lost,
    declare_core,
    declare_site,
)
from balsam_mq.broker.topology import SHARED_MAX, shared
from balsam_mq.domain import encode_event_docs
from balsam_mq.domain.models import expand_event_doc, routing_key
from balsam_mq.errors import BalsamError, StoreError, brief
from balsam_mq.store import Store
from balsam_mq.store.schema import EVENTS

log = logging.getLogger(__name__)

# batches published and awaiting their confirms at once: RabbitMQ confirms persistent
# messages after writing them, and the next batch goes out meanwhile
IN_FLIGHT = 4


class Relay:
    """Publishes every ``events`` insert as ``<kind>.<site_id>.<state>`` on ``<ns>.events``.

    Example::

        relay = Relay(store, amqp, topology)
        await relay.run()   # until cancelled; resumes from its saved token next time
    """

    def __init__(
        self,
        store: Store,
        connection: AbstractConnection,
        topology: Topology,
        *,
        name: str = "default",
        batch_size: int = 1000,
        max_await_ms: int = 20,
        idle_save_s: float = 10.0,
        busy_save_s: float = 0.25,
        lease_s: float = 5.0,
    ) -> None:
        self._store = store
        self._connection = connection
        self._topology = topology
        self.name = name
        self._batch_size = batch_size
        self._max_await_ms = max_await_ms
        self._idle_save_s = idle_save_s
        self._busy_save_s = busy_save_s
        self._lease_s = lease_s
        self.owner = uuid.uuid4().hex  # this relay, in the lease
        self.leading = False
        self._known_sites: set[int] = set()
        self.published = 0  # events

    async def run(self) -> None:
        """Relay until cancelled (standing by while another relay of this name holds the
        lease). Errors propagate; see :meth:`run_forever` to restart."""
        await self._wait_for_lease()
        self.leading = True
        try:
            declare_channel = await self._connection.channel()
            try:
                await declare_core(declare_channel, self._topology)
                publisher = await Publisher.open(self._connection, self._topology.events.name)
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._keep_lease())
                        tg.create_task(self._relay(publisher, declare_channel))
                except BaseExceptionGroup as group:
                    raise group.exceptions[0] from None
                finally:
                    await publisher.close()
            finally:
                await close_channel(declare_channel)
        finally:
            self.leading = False
            # awaited even when cancelled (a bounded while), so its failure is not left behind
            with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
                await self._store.relay_state.release(self.name, self.owner)

    async def _wait_for_lease(self) -> None:
        standing_by = False
        while not await self._store.relay_state.acquire(self.name, self.owner, self._lease_s):
            if not standing_by:
                log.info("relay %s: another relay of this name publishes; standing by", self.name)
                standing_by = True
            await asyncio.sleep(self._lease_s / 2)
        if standing_by:
            log.info("relay %s: took over publishing", self.name)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            if not await self._store.relay_state.acquire(self.name, self.owner, self._lease_s):
                raise StoreError(f"relay {self.name} lost its lease to another relay")

    async def run_forever(self, *, backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        """:meth:`run`, restarted from the saved token after broker or database errors."""
        delay = backoff
        failing = False  # one log line per outage, not one per restart
        while True:
            started = time.monotonic()
            try:
                await self.run()
            except Exception as exc:
                if not isinstance(exc, BalsamError | PyMongoError | OSError) and not (
                    connection_lost(exc)
                ):
                    raise
                if time.monotonic() - started > max_backoff:  # it had been running
                    delay, failing = backoff, False
                if not failing:
                    log.warning(
                        "relay %s stopped (%s); restarting until it runs again",
                        self.name,
                        brief(exc),
                    )
                failing = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)

    async def _relay(self, publisher: Publisher, declare_channel: Any) -> None:
        token = await self._store.relay_state.token(self.name)
        # only the inserted document (and the resume token, _id): less to send and decode
        pipeline: list[dict[str, Any]] = [
            {"$match": {"operationType": "insert"}},
            {"$project": {"fullDocument": 1}},
        ]
        events = self._store.db[EVENTS]
        async with await events.watch(
            pipeline, resume_after=token, max_await_time_ms=self._max_await_ms
        ) as stream:
            arrived = _Arrivals(4 * self._batch_size)
            reader = asyncio.create_task(self._read(stream, arrived))
            try:
                await self._send(stream, arrived, reader, publisher, declare_channel)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, stream: Any, arrived: _Arrivals) -> None:
        """Every inserted event document, with its resume token, as soon as the stream has it."""
        while True:
            change = await stream.try_next()
            if change is not None:
                await arrived.put(change["fullDocument"], change["_id"])
            elif not stream.alive:  # a closed stream answers None at once, forever
                raise StoreError(
                    "the events change stream was closed by MongoDB (the events collection "
                    "or its database was dropped or renamed)"
                )

    async def _send(
        self,
        stream: Any,
        arrived: _Arrivals,
        reader: asyncio.Task[None],
        publisher: Publisher,
        declare_channel: Any,
    ) -> None:
        """Publish what has arrived, batch after batch, up to ``IN_FLIGHT`` batches awaiting
        their confirms at once; save the resume token of the last batch confirmed (with
        every batch before it) at most every ``busy_save_s``, and the stream's own while
        idle."""
        unsaved: Any = None  # the token of the last confirmed event, not yet saved
        last_save = time.monotonic()
        in_flight: deque[tuple[asyncio.Task[None], Any]] = deque()  # in publishing order
        try:
            while True:
                wait = self._busy_save_s if unsaved is not None or in_flight else self._idle_save_s
                waiter = asyncio.ensure_future(arrived.ready.wait())
                try:
                    waiting: set[asyncio.Future[Any]] = {waiter, reader}
                    if in_flight:
                        waiting.add(in_flight[0][0])
                    woken, _ = await asyncio.wait(
                        waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waiter.cancel()
                if reader.done():
                    reader.result()  # raises the reader's error
                    raise BalsamError("the relay's stream reader stopped")
                while in_flight and in_flight[0][0].done():
                    done, token = in_flight.popleft()
                    done.result()  # raises a publishing error
                    unsaved = token
                batch, token = arrived.take(self._batch_size)
                if batch:
                    confirmed = await self._start(publisher, declare_channel, batch)
                    in_flight.append((asyncio.ensure_future(confirmed), token))
                    if len(in_flight) >= IN_FLIGHT:
                        await asyncio.wait([in_flight[0][0]])
                elif not woken and not in_flight and not arrived.ready.is_set():
                    # quiet for a while: everything read is published, so the stream's
                    # position is safe to keep (fresh inside the oplog window); a save
                    # right after each confirm would cost a write per burst
                    await self._save(unsaved or stream.resume_token)
                    unsaved, last_save = None, time.monotonic()
                    continue
                if unsaved is not None and time.monotonic() - last_save >= self._busy_save_s:
                    await self._save(unsaved)
                    unsaved, last_save = None, time.monotonic()
        finally:
            for task, token in in_flight:  # stopping: keep what was confirmed, in order
                if not task.done() or task.cancelled() or task.exception() is not None:
                    break
                unsaved = token
            for task, _ in in_flight:
                task.cancel()
            if unsaved is not None:
                with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
                    await self._save(unsaved)

    async def _save(self, token: Any) -> None:
        if not await self._store.relay_state.save(self.name, token, owner=self.owner):
            raise StoreError(f"relay {self.name} lost its lease to another relay")

    async def _start(
        self, publisher: Publisher, channel: Any, batch: list[dict[str, Any]]
    ) -> Awaitable[None]:
        """Send ``batch``; what completes once RabbitMQ confirmed all of it."""
        for site_id in {e["site_id"] for e in batch} - self._known_sites:
            # a site's work queues exist before its first event is routed to them
            await declare_site(channel, self._topology, site_id)
            self._known_sites.add(site_id)
        confirmed = await publisher.start_many(_messages(batch))
        return self._count(confirmed, len(batch))

    async def _count(self, confirmed: Awaitable[None], n: int) -> None:
        await confirmed
        self.published += n


class _Arrivals:
    """Events read and not yet published, handed over a batch at a time (not one by one)."""

    def __init__(self, limit: int) -> None:
        self._docs: list[dict[str, Any]] = []
        self._tokens: list[Any] = []
        self._limit = limit
        self.ready = asyncio.Event()  # set while something waits to be published
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, doc: dict[str, Any], token: Any) -> None:
        await self._room.wait()
        self._docs.append(doc)
        self._tokens.append(token)
        self.ready.set()
        if len(self._docs) >= self._limit:
            self._room.clear()

    def take(self, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """Up to ``limit`` events in stream order, and the resume token of the last."""
        docs, self._docs = self._docs[:limit], self._docs[limit:]
        tokens, self._tokens = self._tokens[:limit], self._tokens[limit:]
        if not self._docs:
            self.ready.clear()
        if len(self._docs) < self._limit:
            self._room.set()
        return docs, (tokens[-1] if tokens else None)


def _messages(batch: list[dict[str, Any]]) -> list[Outgoing]:
    """Runs of events with one routing key, a message each. A job's events reach every
    queue in the order they happened: the batch's documents (``domain.models.THEN``)
    are taken in stream order, in stretches where no job appears twice, and each stretch
    is sent step by step (every document's first event, then every second...), by key
    within a step. So the runs of a busy stream are long: a thousand jobs created in one
    transaction are three messages and a few. Runnable jobs travel at most ``SHARED_MAX``
    to a message."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for stretch in _stretches(batch):
        by_step: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for doc in stretch:
            for position, event in enumerate(expand_event_doc(doc)):
                kind, quiet = event.get("kind", "job"), event.get("quiet", False)
                key = routing_key(kind, event["site_id"], event["to_state"], quiet)
                by_step.setdefault((position, key), []).append(event)
        for (_, key), events in sorted(by_step.items(), key=lambda item: item[0][0]):
            first = events[0]
            limit = len(events)
            if shared(first.get("kind", "job"), first["to_state"], first.get("quiet", False)):
                limit = SHARED_MAX
            runs.extend((key, events[i : i + limit]) for i in range(0, len(events), limit))
    return [Outgoing(key, encode_event_docs(run), _message_id(run)) for key, run in runs]


def _stretches(batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``batch`` cut, in order, where a job's document follows one of the same job."""
    stretches: list[list[dict[str, Any]]] = [[]]
    jobs: set[int] = set()
    for doc in batch:
        job_id = doc.get("job_id")
        if job_id is not None:
            if job_id in jobs:
                stretches.append([])
                jobs.clear()
            jobs.add(job_id)
        stretches[-1].append(doc)
    return stretches


def _message_id(run: list[dict[str, Any]]) -> str:
    """The event's id for a message of one; never an event's id for a message of several,
    so that naming an item (a deferral) never names its whole message."""
    first = str(run[0].get("_id", ""))
    return first if len(run) == 1 else f"{first}+{len(run) - 1}"
