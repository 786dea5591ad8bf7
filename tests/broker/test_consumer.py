"""The consumer runner: batches, acks after the handler, retries, and the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from aio_pika.abc import AbstractRobustConnection

from balsam_mq.broker import (
    ATTEMPTS_HEADER,
    Consumer,
    Outgoing,
    Publisher,
    QueueSpec,
    Topology,
    declare_core,
    declare_queue,
)
from balsam_mq.broker.returns import retry_delay
from balsam_mq.domain import Delivery

# the retry, delay and dead-letter mechanics on both kinds of queue
pytestmark = pytest.mark.parametrize("settings", ["classic", "quorum"], indirect=True)


class Recorder:
    """Records every batch; raises for bodies listed in ``poison``."""

    def __init__(self, poison: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.batches: list[list[bytes]] = []
        self.poison = poison
        self.calls_with_poison = 0
        self.attempts: list[tuple[float, int]] = []  # (when, attempts before) of each message
        self.marked: list[tuple[bytes, str, str]] = []  # what parked() was told

    async def handle(self, batch: Sequence[Delivery]) -> None:
        bodies = [d.body for d in batch]
        self.batches.append(bodies)
        if len(batch) == 1:
            self.attempts.append((time.monotonic(), batch[0].attempts))
        if self.poison & set(bodies):
            self.calls_with_poison += 1
            raise ValueError("cannot handle " + ",".join(b.decode() for b in bodies))

    async def parked(self, delivery: Delivery, queue: str, error: str) -> None:
        self.marked.append((delivery.body, queue, error))


@pytest.fixture(autouse=True)
async def _delete_work_queue(
    amqp: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[None]:
    yield
    channel = await amqp.channel()
    await channel.queue_delete(f"{topology.namespace}.work")
    await channel.close()


async def _setup(amqp: AbstractRobustConnection, topology: Topology) -> tuple[QueueSpec, Publisher]:
    channel = await amqp.channel()
    await declare_core(channel, topology)
    spec = topology.work_queue(f"{topology.namespace}.work", ("job.1.READY",))
    await declare_queue(channel, spec)
    await channel.close()
    return spec, await Publisher.open(amqp, topology.events.name)


async def _dead_letters(
    amqp: AbstractRobustConnection, topology: Topology
) -> list[dict[str, object]]:
    channel = await amqp.channel()
    queue = await channel.declare_queue(topology.dead_queue.name, passive=True)
    out = []
    while (message := await queue.get(fail=False)) is not None:
        out.append({"body": message.body, **(message.headers or {})})
        await message.ack()
    await channel.close()
    return out


async def test_messages_are_batched_and_acked_after_handle(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish_many(
        [Outgoing("job.1.READY", str(i).encode(), f"m{i}") for i in range(300)]
    )
    handler = Recorder()
    consumer = Consumer(amqp, topology, spec, handler, prefetch=100, batch_size=50, window=0.05)
    await consumer.run_until_idle()
    got = [b for batch in handler.batches for b in batch]
    assert sorted(got) == sorted(str(i).encode() for i in range(300))
    assert max(len(b) for b in handler.batches) > 1  # batched, not one by one
    assert all(len(b) <= 50 for b in handler.batches)
    assert consumer.handled == 300
    # everything was acked: a second consumer finds nothing
    again = Recorder()
    await Consumer(amqp, topology, spec, again).run_until_idle()
    assert again.batches == []
    await publisher.close()


async def test_always_failing_message_is_parked_in_dead_letter_queue(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish_many(
        [Outgoing("job.1.READY", body, body.decode()) for body in (b"ok1", b"bad", b"ok2")]
    )
    handler = Recorder(poison={b"bad"})
    consumer = Consumer(amqp, topology, spec, handler, batch_size=10, window=0.1, max_attempts=3)
    await consumer.run_until_idle()
    handled_ok = [b for batch in handler.batches if b"bad" not in batch for b in batch]
    assert sorted(handled_ok) == [b"ok1", b"ok2"]  # neighbours of the poison still succeed
    alone = [batch for batch in handler.batches if batch == [b"bad"]]
    assert len(alone) == 3  # exactly max_attempts tries alone, then parked
    # the first retry at once, the second after the first delay level: an outage is waited out
    tries = [t for t, n in handler.attempts if n == 1], [t for t, n in handler.attempts if n == 2]
    assert tries[1][0] - tries[0][0] >= retry_delay(2) - 0.1
    assert consumer.parked == 1
    dead = await _dead_letters(amqp, topology)
    assert len(dead) == 1
    assert dead[0]["body"] == b"bad"
    assert dead[0][ATTEMPTS_HEADER] == 3
    assert dead[0]["x-queue"] == spec.name
    assert dead[0]["x-routing-key"] == "job.1.READY"
    assert "ValueError: cannot handle bad" in str(dead[0]["x-error"])
    # the handler was told, so it can mark the message's jobs
    assert handler.marked == [(b"bad", spec.name, "ValueError: cannot handle bad")]
    # not redelivered forever: the work queue is empty
    after = Recorder()
    await Consumer(amqp, topology, spec, after).run_until_idle()
    assert after.batches == []
    await publisher.close()


class Outage(Exception):
    """What a handler raises while a service it needs is away."""


class Flaky(Recorder):
    """Fails with :class:`Outage` on its first ``outages`` calls, then handles."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    async def handle(self, batch: Sequence[Delivery]) -> None:
        await super().handle(batch)
        if self.outages:
            self.outages -= 1
            raise Outage("the database is away")


async def test_an_outage_is_waited_out_without_counting_attempts_or_splitting_the_batch(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    bodies = [b"a", b"b", b"c"]
    await publisher.publish_many([Outgoing("job.1.READY", b, b.decode()) for b in bodies])
    handler = Flaky(outages=1)
    consumer = Consumer(
        amqp,
        topology,
        spec,
        handler,
        batch_size=10,
        window=0.2,
        max_attempts=1,  # one counted failure would park a message
        transient=lambda exc: isinstance(exc, Outage),
    )
    await consumer.run_until_idle()
    assert consumer.parked == 0
    assert handler.marked == []
    # the failed batch was not split message by message: every message came back
    # (uncounted) and was handled after the outage
    assert sorted(handler.batches[0]) == bodies
    assert sorted(b for batch in handler.batches[1:] for b in batch) == bodies
    assert consumer.handled == 3
    assert await _dead_letters(amqp, topology) == []
    await publisher.close()


async def test_batch_in_hand_is_redelivered_when_consumer_stops_before_ack(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish(Outgoing("job.1.READY", b"x", "x"))
    entered = asyncio.Event()

    class Stuck:
        async def handle(self, batch: Sequence[Delivery]) -> None:
            entered.set()
            await asyncio.Event().wait()  # never finishes: like a process about to be killed

    consumer = Consumer(amqp, topology, spec, Stuck())
    task = asyncio.create_task(consumer.run())
    await entered.wait()
    await consumer.stop(grace=0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    handler = Recorder()
    await Consumer(amqp, topology, spec, handler).run_until_idle()
    assert handler.batches == [[b"x"]]
    await publisher.close()


async def test_deferred_message_comes_back_later_and_is_not_lost(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish_many(
        [Outgoing("job.1.READY", body, body.decode()) for body in (b"later", b"now")]
    )
    seen: list[tuple[bytes, int, str]] = []

    class DeferOnce:
        async def handle(self, batch: Sequence[Delivery]) -> dict[str, float]:
            seen.extend((d.body, d.deferrals, d.routing_key) for d in batch)
            return {d.message_id: 0.5 for d in batch if d.body == b"later" and not d.deferrals}

    await Consumer(amqp, topology, spec, DeferOnce(), window=0.05).run_until_idle()
    assert sorted(seen) == [
        (b"later", 0, "job.1.READY"),
        (b"later", 1, "job.1.READY"),  # back, once, with its original routing key
        (b"now", 0, "job.1.READY"),
    ]
    await publisher.close()


def _batch(*ids: str) -> bytes:
    return json.dumps([{"id": i, "n": i} for i in ids]).encode()


async def test_deferring_some_items_of_a_message_sends_only_those_back(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish(Outgoing("job.1.READY", _batch("a", "b", "c", "d"), "a+3"))
    seen: list[tuple[list[str], int]] = []

    class DeferSome:
        async def handle(self, batch: Sequence[Delivery]) -> dict[str, float]:
            out: dict[str, float] = {}
            for d in batch:
                items = [i["id"] for i in d.json()]
                seen.append((items, d.deferrals))
                if not d.deferrals:
                    out.update({"b": 0.5, "d": 0})  # 0: back at once, at the queue's end
            return out

    await Consumer(amqp, topology, spec, DeferSome()).run_until_idle()
    assert seen[0] == (["a", "b", "c", "d"], 0)
    assert sorted(seen[1:]) == [(["b"], 1), (["d"], 1)]  # each back once, alone
    await publisher.close()


async def test_a_failing_message_of_many_items_is_retried_item_by_item(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish(Outgoing("job.1.READY", _batch("ok1", "bad", "ok2"), "ok1+2"))
    handled: list[str] = []

    class Poisoned:
        async def handle(self, batch: Sequence[Delivery]) -> None:
            items = [i["id"] for d in batch for i in d.json()]
            if "bad" in items:
                raise ValueError("cannot handle bad")
            handled.extend(items)

    consumer = Consumer(amqp, topology, spec, Poisoned(), max_attempts=2)
    await consumer.run_until_idle()
    assert sorted(handled) == ["ok1", "ok2"]  # the neighbours of the poison item succeed
    assert consumer.parked == 1
    (dead,) = await _dead_letters(amqp, topology)
    assert json.loads(dead["body"]) == [{"id": "bad", "n": "bad"}]  # type: ignore[arg-type]
    await publisher.close()


async def test_a_lone_message_is_handled_at_once_and_a_burst_in_large_batches(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    sizes: list[int] = []
    first, everything = asyncio.Event(), asyncio.Event()

    class Sizes:
        async def handle(self, batch: Sequence[Delivery]) -> None:
            await asyncio.sleep(0.02)  # a handler's transaction: messages pile up meanwhile
            sizes.append(len(batch))
            first.set()
            if sum(sizes) == 401:
                everything.set()

    # a long window: only a batching that waits on the clock would notice it
    consumer = Consumer(amqp, topology, spec, Sizes(), prefetch=500, batch_size=500, window=30)
    task = asyncio.create_task(consumer.run())
    await publisher.publish(Outgoing("job.1.READY", b"alone", "alone"))
    await asyncio.wait_for(first.wait(), 5)  # not 30 s: nothing else was arriving
    await publisher.publish_many([Outgoing("job.1.READY", b"x", f"m{i}") for i in range(400)])
    await asyncio.wait_for(everything.wait(), 30)
    await consumer.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sizes[0] == 1
    assert len(sizes) < 40  # the burst was taken in batches of ten messages or more on average
    await publisher.close()


async def test_a_message_deferred_by_zero_is_requeued_at_once(
    amqp: AbstractRobustConnection, topology: Topology
) -> None:
    spec, publisher = await _setup(amqp, topology)
    await publisher.publish_many([Outgoing("job.1.READY", b, b.decode()) for b in (b"a", b"b")])
    seen: list[tuple[bytes, bool]] = []

    class NotYet:
        async def handle(self, batch: Sequence[Delivery]) -> dict[str, float]:
            seen.extend((d.body, d.redelivered) for d in batch)
            return {d.message_id: 0 for d in batch if d.body == b"a" and not d.redelivered}

    consumer = Consumer(amqp, topology, spec, NotYet(), prefetch=1)
    await consumer.run_until_idle()
    if topology.quorum:  # a quorum queue puts it back at its end
        assert seen == [(b"a", False), (b"b", False), (b"a", True)]
    else:  # back at the head of the queue, ahead of the message that came after it
        assert seen == [(b"a", False), (b"a", True), (b"b", False)]
    assert consumer.handled == 2
    await publisher.close()
