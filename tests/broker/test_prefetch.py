"""The consumer runner's live prefetch change (what a launcher's free capacity drives)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aio_pika.abc import AbstractRobustConnection

from balsam_mq.broker import (
    Consumer,
    Outgoing,
    Publisher,
    QueueSpec,
    Topology,
    declare_core,
    declare_queue,
)
from balsam_mq.domain import Delivery


async def test_set_prefetch_changes_how_much_is_in_hand(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    channel = await amqp.channel()
    await declare_core(channel, topology)
    spec = QueueSpec(f"{topology.namespace}.pf", topology.events.name, ("job.1.READY",))
    await declare_queue(channel, spec)
    await channel.close()
    publisher = await Publisher.open(amqp, topology.events.name)
    await publisher.publish_many([Outgoing("job.1.READY", b"%d" % i, f"m{i}") for i in range(20)])

    release, first, everything = asyncio.Event(), asyncio.Event(), asyncio.Event()
    batches: list[int] = []

    class Gate:
        async def handle(self, batch: Sequence[Delivery]) -> None:
            batches.append(len(batch))
            first.set()
            if sum(batches) == 20:
                everything.set()
            await release.wait()

    consumer = Consumer(amqp, topology, spec, Gate(), prefetch=1, batch_size=50, window=0.1)
    task = asyncio.create_task(consumer.run())
    await first.wait()
    await consumer.set_prefetch(8)
    assert consumer.prefetch == 8
    release.set()
    await asyncio.wait_for(everything.wait(), 30)
    await consumer.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await publisher.close()
    assert batches[0] == 1  # prefetch 1: one message in hand
    assert max(batches[1:]) > 1  # after the change: up to 8 at once
    assert max(batches) <= 9
