"""Publishing with publisher confirms: a call returns only once RabbitMQ has the message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import anyio
from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.commands import Basic

from balsam_mq.broker.connection import CLOSE_TIMEOUT_S, close_channel
from balsam_mq.errors import BrokerError

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


@dataclass(frozen=True)
class Outgoing:
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)


class Publisher:
    """Publishes to one exchange (``""`` is the default exchange) on a confirming channel."""

    def __init__(self, channel: AbstractChannel, exchange: AbstractExchange) -> None:
        self._channel = channel
        self._exchange = exchange
        # publishes started and not yet confirmed: close() stops them first, so that none
        # queues its frames on a channel already closed (RabbitMQ would close the connection)
        self._sends: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, connection: aio_pika.abc.AbstractConnection, exchange: str) -> Publisher:
        channel = await connection.channel(publisher_confirms=True)
        if exchange:
            ex = await channel.get_exchange(exchange, ensure=True)
        else:
            ex = channel.default_exchange
        return cls(channel, ex)

    async def publish(self, message: Outgoing) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish all, in order, and wait until every one is confirmed."""
        await (await self.start_many(messages))

    async def start_many(self, messages: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Hand all to the connection, in order, before returning; the awaitable returned
        completes once RabbitMQ confirmed every one (and raises if it refused one).

        Messages of a later call go out after these, so a caller may start the next
        batch before this one is confirmed: confirmations overlap, order is kept.
        Frames go straight to the channel's protocol layer (aiormq): building a full
        client-side message object for each publish costs more than sending it.
        """
        if not messages:
            return asyncio.ensure_future(_nothing())
        try:
            channel = await self._channel.get_underlay_channel()
        except Exception as exc:
            raise BrokerError(f"publish to {self._exchange.name!r} failed: {exc}") from exc
        # created in one synchronous run: each takes the channel's lock and queues its
        # frames in this order at its first step, then waits for its confirmation
        sends = [
            asyncio.ensure_future(
                channel.basic_publish(
                    m.body,
                    exchange=self._exchange.name,
                    routing_key=m.routing_key,
                    properties=Basic.Properties(
                        message_id=m.message_id,
                        headers=m.headers or None,
                        content_type="application/json",
                        delivery_mode=PERSISTENT,
                    ),
                    wait=False,  # type: ignore[call-arg]  # queued, not drained one by one
                )
            )
            for m in messages
        ]
        self._sends.update(sends)
        for send in sends:
            send.add_done_callback(self._sends.discard)
        return asyncio.ensure_future(self._confirmed(messages, sends))

    async def _confirmed(
        self, messages: Sequence[Outgoing], sends: Sequence[asyncio.Future[Any]]
    ) -> None:
        try:
            results = await asyncio.gather(*sends)
        except Exception as exc:
            raise BrokerError(f"publish to {self._exchange.name!r} failed: {exc}") from exc
        finally:
            for send in sends:
                send.cancel()  # after a failure, none is left running
        for m, result in zip(messages, results, strict=True):
            if not isinstance(result, Basic.Ack):
                raise BrokerError(
                    f"RabbitMQ did not confirm message {m.message_id} ({m.routing_key}): "
                    f"{type(result).__name__}"
                )

    async def close(self) -> None:
        """Stop the publishes not yet confirmed, then close the channel; bounded, and
        finished even when the caller is being cancelled."""
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            sends = list(self._sends)
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            await close_channel(self._channel)


async def _nothing() -> None:
    return None
