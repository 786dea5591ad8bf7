"""Opening RabbitMQ: one robust connection, channels made from it by whoever needs one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from balsam_mq.errors import BrokerError

# what an ack, a publish or a new channel raises while the connection is down
_LOST = (ChannelInvalidStateError, AMQPError, ConnectionError)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the broker connection is down for now (the robust connection
    comes back by itself): an ack, publish or channel that met a closed connection."""
    if isinstance(exc, _LOST):
        return True
    if isinstance(exc, BrokerError) and exc.__cause__ is not None:  # a publish that failed
        return connection_lost(exc.__cause__)
    # aiormq, asked for a channel on the connection being replaced
    return isinstance(exc, RuntimeError) and str(exc).endswith(" closed")


@asynccontextmanager
async def open_amqp(url: str, *, timeout: float = 10.0) -> AsyncIterator[AbstractRobustConnection]:
    """Connect to RabbitMQ; a clear error if it does not answer.

    Example::

        async with open_amqp(settings.amqp_url) as amqp:
            channel = await amqp.channel()
    """
    try:
        connection = await aio_pika.connect_robust(url, timeout=timeout)
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        raise BrokerError(f"cannot reach RabbitMQ at {_safe(url)}: {exc}") from exc
    try:
        yield connection
    finally:
        await connection.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
