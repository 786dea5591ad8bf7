"""Opening RabbitMQ: one robust connection, channels made from it by whoever needs one.

The address may list several nodes of a cluster, comma-separated
(``amqp://u:p@node1:5672/,amqp://u:p@node2:5672/``): the connection opens to the first
that answers and, when it is lost, reconnects to the next node that answers, in turn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import anyio
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from yarl import URL

from balsam_mq.errors import BrokerError
from balsam_mq.settings import redact_url, split_urls

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0  # a channel's close, even while its closer is being cancelled

# aio-pika and aiormq log every reconnection attempt (every few seconds while a broker is
# away) and every channel callback that meets the closed connection; the consumers, the
# relay and the heartbeats of balsam_mq say once that the broker went and once it is back
RECONNECTION_LOGGERS = ("aiormq.connection", "aio_pika.robust_connection", "aio_pika.tools")


def quiet_reconnection_logs() -> None:
    """Leave broker outages to balsam_mq's own once-per-outage lines (long-running
    processes call this when they set up logging)."""
    for name in RECONNECTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


# what an ack, a publish or a new channel raises while the connection is down
_LOST = (ChannelInvalidStateError, AMQPError, ConnectionError)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the broker connection is down for now (the robust connection
    comes back by itself): an ack, publish or channel that met a closed connection."""
    if isinstance(exc, _LOST):
        return True
    if isinstance(exc, BrokerError) and exc.__cause__ is not None:  # a publish that failed
        return connection_lost(exc.__cause__)
    # aio-pika/aiormq, asked for a channel while the connection is being replaced
    return isinstance(exc, RuntimeError) and (
        str(exc).endswith(" closed") or str(exc) == "Connection was not opened"
    )


async def close_channel(channel: AbstractChannel) -> None:
    """Close ``channel``, bounded, and finished even when the caller is being cancelled:
    a close cut short leaves the channel's number half-closed, and RabbitMQ answers the
    next frame sent on it by closing the whole connection (``CHANNEL_ERROR - expected
    'channel.open'``), every other channel of the process with it."""
    with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
        if not channel.is_closed:
            await channel.close()


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several nodes: each failed (re)connection attempt moves
    on to the next address, so a node that is down is left for one that answers. The
    next node is tried at once; the reconnect interval is waited only after every node
    failed in turn.

    aio-pika's robust connection reconnects to ``self.url`` only; its reconnection loop
    calls the private ``__connect_transport`` for every attempt, which is where this
    class moves ``url`` on (``tests/broker/test_failover.py`` proves it against two
    nodes, so a change of aio-pika's internals fails there).
    """

    def __init__(self, url: URL, *args: Any, failover: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(url, *args, **kwargs)
        self._urls = [URL(u) for u in failover] or [self.url]
        self._at = 0
        self._interval = self.reconnect_interval
        self._failures = 0  # failed attempts since the last success

    async def _RobustConnection__connect_transport(self) -> None:
        try:
            await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        except BaseException:
            if len(self._urls) > 1:
                self._failures += 1
                self._at = (self._at + 1) % len(self._urls)
                self.url = self._urls[self._at]
                whole_round = self._failures % len(self._urls) == 0
                self.reconnect_interval = self._interval if whole_round else 0.1
                log.debug("RabbitMQ: next attempt on %s", redact_url(str(self.url)))
            raise
        if len(self._urls) > 1:
            self._failures, self.reconnect_interval = 0, self._interval
            log.info("RabbitMQ: connected to %s", redact_url(str(self.url)))


@asynccontextmanager
async def open_amqp(url: str, *, timeout: float = 10.0) -> AsyncIterator[AbstractRobustConnection]:
    """Connect to RabbitMQ (``url``: one address, or a cluster's nodes separated by
    commas); a clear error if none answers.

    Example::

        async with open_amqp(settings.amqp_url) as amqp:
            channel = await amqp.channel()
    """
    urls = split_urls(url)
    connection: AbstractRobustConnection | None = None
    errors: list[str] = []
    for i in range(len(urls)):  # the first attempt fails fast: try each node once
        order = (*urls[i:], *urls[:i])
        # built here, not by aio_pika.connect_robust, which would write ``failover`` (and
        # the passwords in it) into the URL's query string
        candidate = FailoverConnection(URL(order[0]), failover=order)
        try:
            await candidate.connect(timeout=timeout)
            connection = candidate
            break
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
            await candidate.close()
            errors.append(f"{redact_url(order[0])}: {exc}")
    if connection is None:
        raise BrokerError(f"cannot reach RabbitMQ at {'; '.join(errors)}")
    try:
        yield connection
    finally:
        await connection.close()
