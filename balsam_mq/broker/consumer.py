"""The consumer runner: batches deliveries for a handler and owns every ack.

A message body may be a batch of *items*: a JSON array of objects, each with an
``id`` (event messages are). Handlers name items, or whole messages, by id.

What the runner does with each outcome of ``await handler.handle(batch)``:

=============================================  =============================================
outcome                                        runner action
=============================================  =============================================
returns None                                   acks every message of the batch
returns {id: seconds}, ids of messages or of   those messages or items go to the delay queue
items                                          of the nearest level >= seconds (confirmed)
                                               and come back to this queue afterwards, with
                                               ``x-balsam-deferrals`` + 1; the rest is acked.
                                               0 seconds: a whole message is requeued (nack:
                                               in its place in a classic queue, at the end of
                                               a quorum queue), items go back at once at the
                                               end of the queue
raises, batch of several messages              handles each message alone, so one poison
                                               message cannot fail its neighbours
raises, one message of several items           republishes each item as a message of its
                                               own (confirmed), then acks the original: one
                                               poison item cannot fail its neighbours
raises, one message, fewer than N attempts     republishes it to its queue with the attempt
                                               count + 1 (confirmed), then acks the original:
                                               the first retry at once, the next ones after
                                               the delay levels in turn (1 s, 5 s, 30 s...),
                                               so a passing outage is waited out
raises, one message, N-th attempt              publishes it to the dead-letter exchange with
                                               ``x-error``/``x-balsam-attempts``/``x-queue`` headers
                                               (confirmed), calls the handler's
                                               ``parked(delivery, queue, error)`` if it has (it
                                               marks the jobs the message was about), then
                                               acks: parked, not dropped, never unexplained
raises an error ``transient`` accepts (the     every message of the batch goes to the delay
database is away), any batch                   queue and comes back after 1 s, then 5 s, then
                                               every 30 s while the outage lasts; attempts
                                               are not counted, so an outage of any length
                                               parks nothing; one log line when the outage
                                               starts, one when handling succeeds again
runner stopped or process killed before ack    nothing acked: RabbitMQ redelivers the batch
                                               (handlers are idempotent)
connection lost before the ack (broker down)   nothing acked, the runner goes on: RabbitMQ
                                               redelivers the batch once the (robust)
                                               connection is back
=============================================  =============================================

N is ``max_attempts``. Handlers never see aio-pika: they get :class:`Delivery` values.
A batch is every message already in hand when the previous one is done (up to
``batch_size``), gathered for at most ``window`` seconds while more keep arriving: a
lone message is handled at once, a burst in few large batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from balsam_mq.broker.connection import close_channel, connection_lost
from balsam_mq.broker.declare import declare_core, declare_queue
from balsam_mq.broker.publisher import Publisher
from balsam_mq.broker.returns import (
    ATTEMPTS_HEADER,
    DEFERRALS_HEADER,
    ROUTING_KEY_HEADER,
    Deferrals,
    Returns,
    items_of,
)
from balsam_mq.broker.topology import DELAY_LEVELS, QueueSpec, Topology
from balsam_mq.domain import Delivery
from balsam_mq.errors import brief

log = logging.getLogger(__name__)

# seconds a batch waits out an outage of what its handler needs, by consecutive failures
OUTAGE_DELAYS: tuple[int, ...] = (1, 5, 30)


class Handler(Protocol):
    async def handle(self, batch: Sequence[Delivery]) -> Deferrals | None: ...


class ConsumerState(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class Consumer:
    """Consumes ``spec`` and feeds ``handler`` batches of up to ``batch_size`` messages.

    A batch is whatever arrives within ``window`` seconds of its first message.
    :meth:`set_prefetch` changes how many messages may be in hand while running.

    Example::

        consumer = Consumer(amqp, topology, topology.site(1).postprocess, PostprocessHandler(...))
        await consumer.run()            # until stop()
        await consumer.run_until_idle() # tests: until the queue is empty and all is acked
    """

    def __init__(
        self,
        connection: AbstractConnection,
        topology: Topology,
        spec: QueueSpec,
        handler: Handler,
        *,
        prefetch: int = 200,
        batch_size: int = 100,
        window: float = 0.02,
        max_attempts: int = 5,
        transient: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.state = ConsumerState.CREATED
        self._connection = connection
        self._topology = topology
        self._handler = handler
        self._prefetch = prefetch
        self._batch_limit = max(1, batch_size)
        self._batch_size = max(1, min(batch_size, prefetch or 1))
        self._subscription = asyncio.Lock()  # consume/cancel of our subscription
        # a prefetch change the broker did not get (its connection was down): applied
        # when the connection is back
        self._stale = False
        self._away = False  # the broker connection was lost and has not come back yet
        self._resubscribing: asyncio.Task[None] | None = None
        self._window = window
        self._max_attempts = max_attempts
        self._transient = transient
        self._outage: float | None = None  # when the current outage began (loop time)
        self._outage_failures = 0
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._held = 0  # delivered to us and not yet acked
        self._settled = asyncio.Event()  # set while no batch is in hand
        self._settled.set()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._returns: Returns | None = None  # once started
        self.handled = 0  # messages acked after a successful handle

    async def start(self) -> None:
        if self.state is not ConsumerState.CREATED:
            raise RuntimeError(f"consumer of {self.spec.name} cannot start from {self.state}")
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=max(1, self._prefetch))
        # the exchanges this consumer binds to and republishes through (idempotent)
        await declare_core(channel, self._topology)
        self._queue = await declare_queue(channel, self.spec)
        dead = await channel.get_exchange(self._topology.dead_letter.name, ensure=True)
        delay = {}
        for seconds in DELAY_LEVELS:
            exchange = await channel.get_exchange(
                self._topology.delay_exchange(seconds).name, ensure=True
            )
            delay[seconds] = Publisher(channel, exchange)
        self._returns = Returns(
            self.spec.name,
            self._topology,
            retry=Publisher(channel, channel.default_exchange),
            delay=delay,
            dead=Publisher(channel, dead),
            max_attempts=self._max_attempts,
            on_parked=getattr(self._handler, "parked", None),
        )
        self._channel = channel
        if self._prefetch:  # 0: start paused (see set_prefetch)
            self._tag = await self._queue.consume(self._on_message)
        callbacks = getattr(self._connection, "reconnect_callbacks", None)
        if callbacks is not None:
            callbacks.add(self._on_reconnect)
        self.state = ConsumerState.RUNNING

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._held += 1
        await self._buffer.put(message)

    async def run(self) -> None:
        """Consume until :meth:`stop` (or cancellation)."""
        if self.state is ConsumerState.CREATED:
            await self.start()
        try:
            while self.state is ConsumerState.RUNNING:
                batch = await self._next_batch()
                if self.state is not ConsumerState.RUNNING:
                    break  # stopping: the batch stays unacked and is redelivered
                self._settled.clear()
                try:
                    await self._process(batch)
                except Exception as exc:
                    if not connection_lost(exc):
                        raise
                    # the channel went with the connection: what it did not ack goes back
                    # to the queue, and the robust connection resumes consuming
                    self._held = max(0, self._held - len(batch))
                    self._lost(
                        f"connection to RabbitMQ lost ({type(exc).__name__}); the messages "
                        "in hand come back when it returns"
                    )
                finally:
                    self._settled.set()
        finally:
            if self.state is not ConsumerState.STOPPED:
                await self._close()

    async def run_until_idle(self, *, settle: float = 0.05) -> None:
        """Consume until the queue is empty and nothing is held or in flight, then stop."""
        if self.state is ConsumerState.CREATED:
            await self.start()
        task = asyncio.create_task(self.run())
        # a separate channel: a passive declare on the consuming (robust) channel
        # re-registers the queue and silently stops its deliveries
        probe = await self._connection.channel()
        try:
            quiet = 0
            while quiet < 3:
                if task.done():
                    task.result()
                    return
                await asyncio.sleep(settle)
                if self._held or (self._returns is not None and self._returns.deferred):
                    quiet = 0
                    continue
                queue = await probe.declare_queue(self.spec.name, passive=True)
                ready = queue.declaration_result.message_count
                quiet = quiet + 1 if ready == 0 else 0
        finally:
            await probe.close()
            await self.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let the batch in hand finish within ``grace``, close."""
        if self.state in (ConsumerState.CREATED, ConsumerState.STOPPED):
            self.state = ConsumerState.STOPPED
            return
        self.state = ConsumerState.DRAINING
        async with self._subscription:
            if self._queue is not None and self._tag is not None:
                try:
                    await self._queue.cancel(self._tag)
                except Exception:  # the channel may already be gone
                    log.debug("cancel of %s failed", self.spec.name, exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), grace)
        self._buffer.put_nowait(None)  # wake a loop waiting for its next batch
        await self._close()

    @property
    def parked(self) -> int:
        """Messages sent to the dead-letter exchange."""
        return 0 if self._returns is None else self._returns.parked

    @property
    def prefetch(self) -> int:
        return self._prefetch

    @property
    def batch_size(self) -> int:
        """The most messages handed to the handler at once (at most the prefetch)."""
        return self._batch_size

    def set_batch_size(self, batch_size: int) -> None:
        """Take at most ``batch_size`` messages at once from the next batch on."""
        self._batch_limit = max(1, batch_size)
        self._batch_size = max(1, min(self._batch_limit, self._prefetch))

    async def set_prefetch(self, prefetch: int) -> None:
        """Let RabbitMQ hand us up to ``prefetch`` unacked messages from now on; 0 pauses
        the subscription (nothing more is delivered) until a later call raises it.

        RabbitMQ applies a QoS change only to consumers started after it, so the
        subscription is renewed; messages already delivered stay in hand and settle as
        usual. A launcher makes its prefetch follow its free capacity with this.
        """
        prefetch = max(0, int(prefetch))
        async with self._subscription:
            if prefetch == self._prefetch:
                return
            self._prefetch = prefetch
            self._batch_size = max(1, min(self._batch_limit, prefetch))
            if self.state is not ConsumerState.RUNNING or self._channel is None:
                return
            if self._queue is None:
                return
            await self._subscribe()

    async def _subscribe(self) -> None:
        """Renew the subscription with the current prefetch (under ``_subscription``). With
        the connection down, the change is kept for when it is back."""
        assert self._queue is not None and self._channel is not None
        try:
            if self._tag is not None:
                # the robust channel restores a subscription it knew of, with its tag
                with contextlib.suppress(KeyError):
                    await self._queue.cancel(self._tag)
                self._tag = None
            if self._prefetch:
                await self._channel.set_qos(prefetch_count=self._prefetch)
                self._tag = await self._queue.consume(self._on_message)
            self._stale = False
        except Exception as exc:
            if not connection_lost(exc):
                raise
            self._stale = True
            self._lost(
                f"connection to RabbitMQ lost ({type(exc).__name__}); prefetch "
                f"{self._prefetch} applied when it returns"
            )

    def _lost(self, message: str) -> None:
        """Say it once per outage, not once per batch that meets it."""
        if not self._away:
            self._away = True
            log.warning("%s: %s", self.spec.name, message)

    def _on_reconnect(self, *_: Any) -> None:
        if self._away:
            self._away = False
            log.warning("%s: connection to RabbitMQ back", self.spec.name)
        if self._stale and self.state is ConsumerState.RUNNING:
            self._resubscribing = asyncio.get_running_loop().create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        async with self._subscription:
            if self._stale and self.state is ConsumerState.RUNNING and self._queue is not None:
                await self._subscribe()

    async def _close(self) -> None:
        self.state = ConsumerState.STOPPED
        callbacks = getattr(self._connection, "reconnect_callbacks", None)
        if callbacks is not None:
            callbacks.discard(self._on_reconnect)
        # unacked messages (the buffer) go back to the queue when the channel closes
        if self._channel is not None:
            await close_channel(self._channel)

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        """The first message in hand (waited for), and every one that is already here or
        keeps arriving without a pause, for at most ``window`` seconds."""
        first = await self._buffer.get()
        if first is None:  # woken by stop()
            return []
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window
        while len(batch) < self._batch_size:
            if self._buffer.empty():
                # frames already read may still be on their way to the buffer
                await asyncio.sleep(0)
                if self._buffer.empty() or loop.time() >= deadline:
                    break
            message = self._buffer.get_nowait()
            if message is None:
                break
            batch.append(message)
        return batch

    async def _process(self, batch: list[AbstractIncomingMessage]) -> None:
        deliveries = [_delivery(m) for m in batch]
        returns = self._returns
        assert returns is not None
        returns.deferred.difference_update(d.message_id for d in deliveries)
        started = asyncio.get_running_loop().time()
        try:
            deferrals = await self._handler.handle(deliveries)
        except Exception as exc:
            if self._transient is not None and self._transient(exc):
                await self._wait_out(batch, deliveries, exc)
                return
            if len(batch) == 1:
                items = items_of(batch[0].body)
                if items is not None and len(items) > 1:
                    await returns.split(batch[0], deliveries[0], items, exc)
                else:
                    await returns.failed(batch[0], deliveries[0], exc)
                self._held -= 1
                return
            log.warning(
                "%s: batch of %d failed (%s); handling each message alone",
                self.spec.name,
                len(batch),
                exc,
            )
            for message in batch:
                await self._process([message])
            return
        if self._outage is not None:
            log.warning(
                "%s: handling again after %.0f s",
                self.spec.name,
                asyncio.get_running_loop().time() - self._outage,
            )
            self._outage, self._outage_failures = None, 0
        requeued: set[int] = set()
        if deferrals:
            requeued = await returns.defer(batch, deliveries, deferrals)
        # batches are settled in delivery order, so every earlier delivery on this
        # channel is already settled: one cumulative ack covers the rest of the batch
        outstanding = [m for i, m in enumerate(batch) if i not in requeued]
        if outstanding:
            await outstanding[-1].ack(multiple=True)
        self._held -= len(batch)
        self.handled += len(outstanding)
        # one line per batch, never per job: what came, how much of it comes back later
        log.info(
            "%s: batch of %d message(s) handled in %.3f s%s",
            self.spec.name,
            len(batch),
            asyncio.get_running_loop().time() - started,
            f", {len(deferrals)} deferred" if deferrals else "",
        )

    async def _wait_out(
        self,
        batch: list[AbstractIncomingMessage],
        deliveries: list[Delivery],
        exc: Exception,
    ) -> None:
        """Send the whole batch back later, attempts uncounted: what the handler needs is
        away (see the outcome table)."""
        if self._outage is None:
            self._outage = asyncio.get_running_loop().time()
            log.warning(
                "%s: %s; messages wait and are retried until it is back",
                self.spec.name,
                brief(exc),
            )
        delay = OUTAGE_DELAYS[min(self._outage_failures, len(OUTAGE_DELAYS) - 1)]
        self._outage_failures += 1
        returns = self._returns
        assert returns is not None
        for message, delivery in zip(batch, deliveries, strict=True):
            await returns.later(message, delivery, message.body, delivery.message_id, delay)
            await message.ack()
        self._held -= len(batch)


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    headers = message.headers or {}
    attempts = headers.get(ATTEMPTS_HEADER, 0)
    deferrals = headers.get(DEFERRALS_HEADER, 0)
    routing_key = headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""
    return Delivery(
        message_id=message.message_id or str(message.delivery_tag),
        routing_key=str(routing_key),
        body=message.body,
        attempts=int(attempts) if isinstance(attempts, int | str) else 0,
        deferrals=int(deferrals) if isinstance(deferrals, int | str) else 0,
        redelivered=bool(message.redelivered),
    )


__all__ = ["Consumer", "ConsumerState", "Handler"]
