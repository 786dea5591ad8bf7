"""The dead-letter queue: list parked messages, replay them to their queue, or discard them.

Parked messages are read with unacknowledged gets on a channel of their own: whatever is
not acked goes back to the queue when the channel closes, so reading never loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import ChannelNotFoundEntity

from balsam_mq.broker.connection import close_channel
from balsam_mq.broker.publisher import Outgoing, Publisher
from balsam_mq.broker.returns import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    PARKED_AT_HEADER,
    QUEUE_HEADER,
    ROUTING_KEY_HEADER,
)
from balsam_mq.broker.topology import Topology
from balsam_mq.domain import ParkedMessage


async def list_parked(
    connection: AbstractConnection, topology: Topology, *, limit: int | None = None
) -> list[ParkedMessage]:
    """The parked messages, oldest first (all of them, or the first ``limit``)."""
    channel = await connection.channel()
    try:
        queue = await _dead_queue(channel, topology)
        if queue is None:
            return []
        out: list[ParkedMessage] = []
        while limit is None or len(out) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            out.append(_parked(message))
        return out
    finally:
        await close_channel(channel)  # every message read goes back, in its place


async def take_parked(
    connection: AbstractConnection,
    topology: Topology,
    chosen: Callable[[ParkedMessage], bool],
    *,
    replay: Callable[[ParkedMessage], bool] | None = None,
) -> list[ParkedMessage]:
    """Remove the ``chosen`` parked messages from the dead-letter queue; with ``replay``,
    first republish (confirmed) to its queue each one for which it says so, attempts
    counted from zero. The rest stay parked. Returns the messages removed."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        queue = await _dead_queue(channel, topology)
        if queue is None:
            return []
        publisher = Publisher(channel, channel.default_exchange)
        taken: list[tuple[AbstractIncomingMessage, ParkedMessage]] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            parked = _parked(message)
            if chosen(parked):
                taken.append((message, parked))
        again = [p for _, p in taken if replay is not None and replay(p)]
        # by the queue's name through the default exchange; no attempts header: counted anew
        await publisher.publish_many(
            [
                Outgoing(p.queue, p.body, p.message_id, {ROUTING_KEY_HEADER: p.routing_key})
                for p in again
            ]
        )
        for message, _ in taken:
            await message.ack()
        return [p for _, p in taken]
    finally:
        await close_channel(channel)


async def _dead_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue | None:
    """The dead-letter queue, or ``None`` if no consumer ever declared it (nothing parked)."""
    try:
        return await channel.get_queue(topology.dead_queue.name, ensure=True)
    except ChannelNotFoundEntity:
        return None


def _parked(message: AbstractIncomingMessage) -> ParkedMessage:
    headers: dict[str, Any] = dict(message.headers or {})
    return ParkedMessage(
        message_id=message.message_id or "",
        queue=_text(headers.get(QUEUE_HEADER)),
        routing_key=_text(headers.get(ROUTING_KEY_HEADER)) or (message.routing_key or ""),
        attempts=int(headers.get(ATTEMPTS_HEADER) or 0),
        error=_text(headers.get(ERROR_HEADER)),
        parked_at=_text(headers.get(PARKED_AT_HEADER)),
        body=message.body,
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)
