"""The outbox relay: tails the ``events`` change stream and publishes each event to RabbitMQ.

Every state change is committed together with its ``events`` row; this relay is the
only bridge from those rows to the broker. It publishes a batch with publisher
confirms and only then saves the change-stream resume token of the batch's last
event, so a relay killed at any moment resumes from its last confirmed batch:
events may be published twice (consumers are idempotent), never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aio_pika.abc import AbstractConnection
from pymongo.errors import PyMongoError

from balsam_mq.broker import Outgoing, Publisher, Topology, declare_core, declare_site
from balsam_mq.domain import Event, encode_event
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
        batch_size: int = 500,
        max_await_ms: int = 20,
        idle_save_s: float = 10.0,
    ) -> None:
        self._store = store
        self._connection = connection
        self._topology = topology
        self.name = name
        self._batch_size = batch_size
        self._max_await_ms = max_await_ms
        self._idle_save_s = idle_save_s
        self._known_sites: set[int] = set()
        self.published = 0

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
            batch: list[Event] = []
            last_token: Any = None
            last_save = time.monotonic()
            while True:
                change = await stream.try_next()
                if change is not None:
                    batch.append(Event.from_doc(change["fullDocument"]))
                    last_token = change["_id"]
                    if len(batch) < self._batch_size:
                        continue
                if batch:
                    await self._publish(publisher, declare_channel, batch)
                    await self._store.relay_state.save(self.name, last_token)
                    last_save = time.monotonic()
                    batch = []
                elif time.monotonic() - last_save > self._idle_save_s:
                    # keep the saved point fresh while idle, inside the oplog window
                    await self._store.relay_state.save(self.name, stream.resume_token)
                    last_save = time.monotonic()

    async def _publish(self, publisher: Publisher, channel: Any, batch: list[Event]) -> None:
        for site_id in {e.site_id for e in batch} - self._known_sites:
            # a site's work queues exist before its first event is routed to them
            await declare_site(channel, self._topology, site_id)
            self._known_sites.add(site_id)
        await publisher.publish_many(
            [Outgoing(e.routing_key, encode_event(e), e.id or "") for e in batch]
        )
        self.published += len(batch)
