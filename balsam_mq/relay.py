"""The outbox relay: tails the ``events`` change stream and publishes every event to RabbitMQ.

Every state change is committed together with its ``events`` row; this relay is the
only bridge from those rows to the broker. It publishes a batch with publisher
confirms and only then saves the change-stream resume token of the batch's last
event, so a relay killed at any moment resumes from its last confirmed batch:
events may be published twice (consumers are idempotent), never lost.

One task tails the stream into a bounded queue; another publishes whatever has
arrived (up to ``batch_size``): one event at once when events trickle in, hundreds per
batch under load, with no clock in between. Consecutive events of one routing key
travel in one message, except runnable jobs, which travel alone
(``broker.topology.SHARED_MAX``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aio_pika.abc import AbstractConnection
from pymongo.errors import PyMongoError

from balsam_mq.broker import Outgoing, Publisher, Topology, declare_core, declare_site
from balsam_mq.broker.topology import SHARED_MAX, shared
from balsam_mq.domain import Event, encode_events
from balsam_mq.errors import BalsamError
from balsam_mq.store import Store
from balsam_mq.store.schema import EVENTS

log = logging.getLogger(__name__)


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
    ) -> None:
        self._store = store
        self._connection = connection
        self._topology = topology
        self.name = name
        self._batch_size = batch_size
        self._max_await_ms = max_await_ms
        self._idle_save_s = idle_save_s
        self._busy_save_s = busy_save_s
        self._known_sites: set[int] = set()
        self.published = 0  # events

    async def run(self) -> None:
        """Relay until cancelled. Errors propagate; see :meth:`run_forever` to restart."""
        declare_channel = await self._connection.channel()
        try:
            await declare_core(declare_channel, self._topology)
            publisher = await Publisher.open(self._connection, self._topology.events.name)
            try:
                await self._relay(publisher, declare_channel)
            finally:
                await publisher.close()
        finally:
            if not declare_channel.is_closed:
                await declare_channel.close()

    async def run_forever(self, *, backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        """:meth:`run`, restarted from the saved token after broker or database errors."""
        delay = backoff
        while True:
            started = time.monotonic()
            try:
                await self.run()
            except (BalsamError, PyMongoError, OSError) as exc:
                log.warning("relay %s stopped (%s); restarting in %.1fs", self.name, exc, delay)
            if time.monotonic() - started > max_backoff:
                delay = backoff
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)

    async def _relay(self, publisher: Publisher, declare_channel: Any) -> None:
        token = await self._store.relay_state.token(self.name)
        pipeline = [{"$match": {"operationType": "insert"}}]
        events = self._store.db[EVENTS]
        async with await events.watch(
            pipeline, resume_after=token, max_await_time_ms=self._max_await_ms
        ) as stream:
            arrived: asyncio.Queue[tuple[Event, Any]] = asyncio.Queue(4 * self._batch_size)
            reader = asyncio.create_task(self._read(stream, arrived))
            try:
                await self._send(stream, arrived, reader, publisher, declare_channel)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, stream: Any, arrived: asyncio.Queue[tuple[Event, Any]]) -> None:
        """Every inserted event, with its resume token, as soon as the stream has it."""
        while True:
            change = await stream.try_next()
            if change is not None:
                await arrived.put((Event.from_doc(change["fullDocument"]), change["_id"]))

    async def _send(
        self,
        stream: Any,
        arrived: asyncio.Queue[tuple[Event, Any]],
        reader: asyncio.Task[None],
        publisher: Publisher,
        declare_channel: Any,
    ) -> None:
        """Publish what has arrived, batch after batch; save the resume token of the last
        confirmed event at most every ``busy_save_s``, and the stream's own while idle."""
        unsaved: Any = None  # the token of the last confirmed event, not yet saved
        last_save = time.monotonic()
        # one pending get at a time, never cancelled on a timeout: an event it took is
        # never dropped on the floor
        getter: asyncio.Future[tuple[Event, Any]] | None = None
        try:
            while True:
                wait = self._busy_save_s if unsaved is not None else self._idle_save_s
                if getter is None:
                    getter = asyncio.ensure_future(arrived.get())
                waiting: set[asyncio.Future[Any]] = {getter, reader}
                done, _ = await asyncio.wait(
                    waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if reader in done:
                    reader.result()  # raises the reader's error
                    raise BalsamError("the relay's stream reader stopped")
                if getter not in done:
                    # quiet for a while: everything read is published, so the stream's
                    # position is safe to keep (fresh inside the oplog window)
                    await self._store.relay_state.save(self.name, unsaved or stream.resume_token)
                    unsaved, last_save = None, time.monotonic()
                    continue
                batch = [getter.result()]
                getter = None
                while len(batch) < self._batch_size and not arrived.empty():
                    batch.append(arrived.get_nowait())
                await self._publish(publisher, declare_channel, [e for e, _ in batch])
                unsaved = batch[-1][1]
                if time.monotonic() - last_save >= self._busy_save_s:
                    await self._store.relay_state.save(self.name, unsaved)
                    unsaved, last_save = None, time.monotonic()
        finally:
            if getter is not None:
                getter.cancel()

    async def _publish(self, publisher: Publisher, channel: Any, batch: list[Event]) -> None:
        for site_id in {e.site_id for e in batch} - self._known_sites:
            # a site's work queues exist before its first event is routed to them
            await declare_site(channel, self._topology, site_id)
            self._known_sites.add(site_id)
        await publisher.publish_many(_messages(batch))
        self.published += len(batch)


def _messages(batch: list[Event]) -> list[Outgoing]:
    """Runs of consecutive events with one routing key, a message each, in stream order: a
    job's events reach every queue in the order they happened. Transactions write their
    events step by step, sorted by key within a step (``store.jobs``), so the runs of a
    busy stream are long. Runnable jobs travel ``SHARED_MAX`` (one) to a message."""
    runs: list[list[Event]] = []
    for event in batch:
        if runs and runs[-1][0].routing_key == event.routing_key:
            if not shared(event) or len(runs[-1]) < SHARED_MAX:
                runs[-1].append(event)
                continue
        runs.append([event])
    return [Outgoing(run[0].routing_key, encode_events(run), _message_id(run)) for run in runs]


def _message_id(run: list[Event]) -> str:
    """The event's id for a message of one; never an event's id for a message of several,
    so that naming an item (a deferral) never names its whole message."""
    first = run[0].id or ""
    return first if len(run) == 1 else f"{first}+{len(run) - 1}"
