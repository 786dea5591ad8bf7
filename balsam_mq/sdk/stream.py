"""Live events for the direct backend: one private auto-delete queue per subscription.

The queue is bound to the given routing keys on ``<ns>.events`` *before*
:meth:`EventStream.open` returns, so a caller that reads MongoDB afterwards misses
nothing committed later. Messages are acknowledged when handed out and the channel's
prefetch bounds how many wait in memory: a slow reader leaves the rest in RabbitMQ.
After a broker reconnection :meth:`EventStream.next` answers ``None`` once: events
published while disconnected never reached the queue, so the reader should re-read.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from balsam_mq.broker import Topology, close_channel, connection_lost
from balsam_mq.broker.declare import declare_exchange, declare_queue
from balsam_mq.domain import Event, decode_events
from balsam_mq.errors import SerializationError

log = logging.getLogger(__name__)

PREFETCH = 500


class EventStream:
    """Events published under some routing keys, gathered until read."""

    def __init__(self, connection: AbstractRobustConnection, channel: AbstractChannel) -> None:
        self._connection = connection
        self._channel = channel
        self._buffer: list[Event] = []
        self._last: AbstractIncomingMessage | None = None
        self._gap = False
        self._arrived = asyncio.Event()

    @classmethod
    async def open(
        cls, connection: AbstractRobustConnection, topology: Topology, keys: Sequence[str]
    ) -> EventStream:
        channel = await connection.channel()
        try:
            await channel.set_qos(prefetch_count=PREFETCH)
            await declare_exchange(channel, topology.events)
            spec = topology.private(f"events.{uuid.uuid4().hex}", tuple(keys))
            queue = await declare_queue(channel, spec)
            stream = cls(connection, channel)
            await queue.consume(stream._on_message)
        except BaseException:
            await close_channel(channel)
            raise
        connection.reconnect_callbacks.add(stream._on_reconnect)
        return stream

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._last = message
        try:
            self._buffer.extend(decode_events(message.body))
        except SerializationError:
            log.warning("ignoring a malformed event message on %s", message.routing_key)
        self._arrived.set()

    def _on_reconnect(self, *_: Any) -> None:
        self._buffer.clear()
        self._last = None  # delivered on the old channel: cannot be acknowledged now
        self._gap = True
        self._arrived.set()

    async def next(self) -> list[Event] | None:
        """Every event received since the last call (waits for one); ``None`` after a
        reconnection: some events may have been missed."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if self._gap:
                self._gap = False
                return None
            events, self._buffer = self._buffer, []
            last, self._last = self._last, None
            if last is not None:
                try:
                    await last.ack(multiple=True)
                except Exception as exc:
                    if not connection_lost(exc):
                        raise
                    return None  # the connection is going: the reader re-reads
            if events:
                return events

    async def aclose(self) -> None:
        self._connection.reconnect_callbacks.discard(self._on_reconnect)
        await close_channel(self._channel)
