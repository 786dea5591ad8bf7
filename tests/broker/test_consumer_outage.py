"""A consumer outlives a broker restart: acks lost with the connection are not errors (the
unacknowledged messages come back), and consuming resumes when RabbitMQ is back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aio_pika.abc import AbstractRobustConnection
from support.broker_control import ctl, needs_own_node, start_after
from support.waiting import until

from balsam_mq.broker import Consumer, Outgoing, Publisher, Topology, declare_core, declare_queue
from balsam_mq.domain import Delivery


class Slow:
    """Takes its time over the first batch: its ack comes after the broker went away."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, batch: Sequence[Delivery]) -> None:
        first = not self.seen
        self.seen += [d.body for d in batch]
        if first:
            self.inside.set()
            await self.release.wait()


pytestmark = pytest.mark.usefixtures("broker_restored")


@needs_own_node
async def test_a_consumer_outlives_a_broker_restart(
    amqp: AbstractRobustConnection, topology: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    channel = await amqp.channel()
    await declare_core(channel, topology)
    spec = topology.work_queue(f"{topology.namespace}.outage", ("job.1.READY",))
    await declare_queue(channel, spec)
    await channel.close()
    publisher = await Publisher.open(amqp, topology.events.name)
    handler = Slow()
    consumer = Consumer(amqp, topology, spec, handler, prefetch=10, window=0.01)
    task = asyncio.create_task(consumer.run())
    try:
        await publisher.publish_many([Outgoing("job.1.READY", b"a", "a")])
        await asyncio.wait_for(handler.inside.wait(), 30)
        later = [Outgoing("job.1.READY", f"x{i}".encode(), f"x{i}") for i in range(3)]
        await publisher.publish_many(later)  # in hand too: a second batch meets the outage
        await asyncio.sleep(0.2)
        await asyncio.to_thread(ctl, "stop_app")
        try:
            handler.release.set()  # its ack meets a closed channel

            async def settled() -> bool:  # the lost ack was noticed (or the runner ended)
                return "connection to RabbitMQ lost" in caplog.text or task.done()

            await until(settled, 30)
        finally:
            await asyncio.to_thread(ctl, "start_app")
        assert not task.done(), task
        await asyncio.wait_for(amqp.connected.wait(), 60)

        async def published() -> bool:
            try:
                await publisher.publish_many([Outgoing("job.1.READY", b"b", "b")])
            except Exception:
                return False
            return True

        await until(published, 60, interval=0.5)

        async def both() -> bool:
            return {b"a", b"b"} <= set(handler.seen)  # a again: its ack was lost

        await until(both, 60)
        assert not task.done()
        # one line when the connection went, one when it came back: not one per batch
        assert caplog.text.count("connection to RabbitMQ lost") == 1, caplog.text
        assert caplog.text.count("connection to RabbitMQ back") == 1
    finally:
        await consumer.stop(grace=1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.close()
        channel = await amqp.channel()
        await channel.queue_delete(spec.name)
        await channel.close()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def handle(self, batch: Sequence[Delivery]) -> None:
        self.seen += [d.body for d in batch]


@needs_own_node
async def test_a_prefetch_change_during_an_outage_is_applied_when_the_broker_returns(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    """What a launcher does as its free capacity changes, whatever the broker's state."""
    channel = await amqp.channel()
    await declare_core(channel, topology)
    spec = topology.work_queue(f"{topology.namespace}.prefetch", ("job.1.READY",))
    await declare_queue(channel, spec)
    await channel.close()
    handler = Recorder()
    consumer = Consumer(amqp, topology, spec, handler, prefetch=4, window=0.01)
    task = asyncio.create_task(consumer.run())
    publisher = None
    try:
        await until(lambda: consumer.state == "RUNNING", 30)
        await asyncio.to_thread(ctl, "stop_app")
        back = asyncio.create_task(asyncio.to_thread(start_after, 3.0))
        try:  # paused and resumed while the broker is away: no error, no lost subscription
            await asyncio.wait_for(consumer.set_prefetch(0), 120)
            await asyncio.wait_for(consumer.set_prefetch(2), 120)
        finally:
            await back
        await asyncio.wait_for(amqp.connected.wait(), 60)
        publisher = await _open_publisher(amqp, topology)
        await publisher.publish_many([Outgoing("job.1.READY", b"c", "c")])

        async def delivered() -> bool:
            return b"c" in handler.seen

        await until(delivered, 60)
        assert consumer.prefetch == 2 and not task.done()
    finally:
        await consumer.stop(grace=1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if publisher is not None:
            await publisher.close()
        channel = await amqp.channel()
        await channel.queue_delete(spec.name)
        await channel.close()


async def _open_publisher(amqp: AbstractRobustConnection, topology: Topology) -> Publisher:
    last: Exception | None = None
    for _ in range(60):
        try:
            return await Publisher.open(amqp, topology.events.name)
        except Exception as exc:  # the connection may still be coming back
            last = exc
            await asyncio.sleep(0.5)
    raise AssertionError(f"no publisher after the broker came back: {last}")
