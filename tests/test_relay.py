"""The outbox relay: every event reaches RabbitMQ, in per-job order, and none is lost on restart."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from support.waiting import until

from balsam_mq.broker import Topology, declare_core, declare_queue
from balsam_mq.broker.topology import SHARED_MAX
from balsam_mq.domain import App, Change, Event, Job, JobState, decode_events
from balsam_mq.relay import Relay
from balsam_mq.store import Store, ensure_schema

S = JobState
PATH = [S.READY, S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE]


class Collector:
    """A private queue on ``job.<site>.#`` that records every event message it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.messages: list[tuple[str, int]] = []  # routing key, events carried
        self.arrived = asyncio.Condition()

    async def start(self, amqp: AbstractRobustConnection, topology: Topology, site_id: int) -> None:
        channel = await amqp.channel()
        await declare_core(channel, topology)
        spec = topology.private(f"collector{site_id}", (f"job.{site_id}.#",))
        queue = await declare_queue(channel, spec)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            events = decode_events(message.body)
            self.events.extend(events)
            self.messages.append((message.routing_key or "", len(events)))
        async with self.arrived:
            self.arrived.notify_all()

    async def wait_for(self, n_unique: int, timeout: float = 60) -> None:
        async def enough() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: len({e.id for e in self.events}) >= n_unique)

        await asyncio.wait_for(enough(), timeout)


async def _advance(store: Store, ids: list[int], steps: list[tuple[JobState, JobState]]) -> None:
    for src, dst in steps:
        for start in range(0, len(ids), 500):
            result = await store.jobs.transition(
                [Change(i, src, dst) for i in ids[start : start + 500]]
            )
            assert result.all_moved


async def test_5000_events_arrive_exactly_once_in_per_job_order(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    collector = Collector()
    await collector.start(amqp, topology, site_id=7)
    relay = Relay(store, amqp, topology)
    task = asyncio.create_task(relay.run())
    try:
        jobs = await store.jobs.create_many(
            [Job(app_id=1, site_id=7, workdir=f"j/{i}") for i in range(1000)]
        )
        ids = [j.id for j in jobs if j.id is not None]
        await _advance(store, ids, list(itertools.pairwise(PATH)))
        await collector.wait_for(5000)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(collector.events) == 5000
    assert len({e.id for e in collector.events}) == 5000
    per_job: dict[int, list[str]] = defaultdict(list)
    for e in collector.events:
        assert e.job_id is not None
        per_job[e.job_id].append(e.to_state)
    assert set(per_job) == set(ids)
    assert all(states == [s.value for s in PATH] for states in per_job.values())


async def test_events_written_before_any_relay_ran_are_published(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    await store.jobs.create_many([Job(app_id=1, site_id=3, workdir=f"e/{i}") for i in range(50)])
    collector = Collector()
    await collector.start(amqp, topology, site_id=3)
    task = asyncio.create_task(Relay(store, amqp, topology).run())
    try:
        await collector.wait_for(50)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len({e.job_id for e in collector.events}) == 50


async def test_relay_cancelled_mid_stream_and_restarted_loses_nothing(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    collector = Collector()
    await collector.start(amqp, topology, site_id=5)
    jobs = await store.jobs.create_many(
        [Job(app_id=1, site_id=5, workdir=f"r/{i}") for i in range(2000)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    writer = asyncio.create_task(_advance(store, ids, [(S.READY, S.STAGED_IN)]))
    # stop the relay several times while events are being written and published
    for _ in range(4):
        relay = Relay(store, amqp, topology, batch_size=100)
        task = asyncio.create_task(relay.run())
        async with collector.arrived:
            target = len(collector.events) + 300
            await asyncio.wait_for(
                collector.arrived.wait_for(lambda t=target: len(collector.events) >= t), 30
            )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await writer
    final = asyncio.create_task(Relay(store, amqp, topology).run())
    try:
        await collector.wait_for(4000)
    finally:
        final.cancel()
        await asyncio.gather(final, return_exceptions=True)
    expected = {e.id async for e in store.events.iterate(site_id=5)}
    assert len(expected) == 4000
    assert {e.id for e in collector.events} == expected  # duplicates allowed, losses not


async def test_events_travel_many_to_a_message_and_runnable_jobs_in_small_groups(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    app = await store.apps.upsert(App(site_id=4, name="Plain", command_template="true", hooks=[]))
    assert app.id is not None
    collector = Collector()
    await collector.start(amqp, topology, site_id=4)
    await store.jobs.create_many(
        [Job(app_id=app.id, site_id=4, workdir=f"b/{i}") for i in range(300)]
    )
    task = asyncio.create_task(Relay(store, amqp, topology).run())
    try:
        await collector.wait_for(900)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, n in collector.messages:
        per_key[key].append(n)
    # the passed-through steps of all 300 jobs in a few messages, under the quiet keys (how
    # few depends on how the change stream hands the backlog over: ten events or more each)
    for key in ("job.4.READY.quiet", "job.4.STAGED_IN.quiet"):
        assert sum(per_key[key]) == 300 and len(per_key[key]) <= 30
    # runnable jobs a few to a message (at most SHARED_MAX), in the order they became
    # runnable: launchers share them in small groups
    runnable = per_key["job.4.PREPROCESSED"]
    assert sum(runnable) == 300 and max(runnable) == SHARED_MAX > 1
    assert len(runnable) <= 300 // SHARED_MAX + 30
    order = defaultdict(list)
    for e in collector.events:
        order[e.job_id].append(e.seq)
    assert all(seqs == [1, 2, 3] for seqs in order.values())


async def test_steps_stored_together_arrive_one_event_each_in_per_job_order(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    """Creations passed through to PREPROCESSED and runs' ends passed through to
    JOB_FINISHED, each job's in one document, all read by the relay in one backlog: every
    step is an event of its own, and each job's arrive in the order they happened."""
    app = await store.apps.upsert(App(site_id=6, name="Plain", command_template="true", hooks=[]))
    assert app.id is not None
    collector = Collector()
    await collector.start(amqp, topology, site_id=6)
    jobs = await store.jobs.create_many(
        [Job(app_id=app.id, site_id=6, workdir=f"s/{i}") for i in range(200)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    await _advance(store, ids, [(S.PREPROCESSED, S.RUNNING), (S.RUNNING, S.RUN_DONE)])
    task = asyncio.create_task(Relay(store, amqp, topology).run())
    try:
        await collector.wait_for(200 * 8)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(collector.events) == len({e.id for e in collector.events}) == 200 * 8
    per_job: dict[int | None, list[int | None]] = defaultdict(list)
    for e in collector.events:
        per_job[e.job_id].append(e.seq)
    assert sorted(per_job) == ids
    assert all(seqs == list(range(1, 9)) for seqs in per_job.values())
    # many jobs' steps to a message: far fewer messages than events
    assert len(collector.messages) < 200


async def test_relays_of_one_name_publish_each_event_once_and_take_over(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    collector = Collector()
    await collector.start(amqp, topology, site_id=6)
    first = Relay(store, amqp, topology, lease_s=1.0)
    second = Relay(store, amqp, topology, lease_s=1.0)
    first_task = asyncio.create_task(first.run())
    await until(lambda: first.leading)
    second_task = asyncio.create_task(second.run())
    try:
        await store.jobs.create_many(
            [Job(app_id=1, site_id=6, workdir=f"a/{i}") for i in range(200)]
        )
        await collector.wait_for(200)
        assert first.leading and not second.leading
        await until(lambda: first.published == 200)  # its confirms are in
        assert second.published == 0  # the second stood by
        first_task.cancel()  # a relay that stops hands over at once
        await asyncio.gather(first_task, return_exceptions=True)
        await until(lambda: second.leading, timeout=10)
        await store.jobs.create_many(
            [Job(app_id=1, site_id=6, workdir=f"b/{i}") for i in range(100)]
        )
        await collector.wait_for(300)  # nothing lost in the handover
        await until(lambda: second.published >= 100)  # published by the second
    finally:
        for task in (first_task, second_task):
            task.cancel()
        await asyncio.gather(first_task, second_task, return_exceptions=True)


async def test_a_relay_waits_out_the_lease_of_a_relay_that_died(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    collector = Collector()
    await collector.start(amqp, topology, site_id=8)
    # a relay killed while holding the lease: it neither renews nor gives it back
    assert await store.relay_state.acquire("default", "a-dead-relay", lease_s=1.5)
    await store.jobs.create_many([Job(app_id=1, site_id=8, workdir=f"d/{i}") for i in range(50)])
    relay = Relay(store, amqp, topology, lease_s=1.5)
    task = asyncio.create_task(relay.run())
    try:
        await collector.wait_for(50, timeout=30)  # published once the dead lease ran out
        assert await store.relay_state.owner("default") == relay.owner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_relay_whose_database_is_dropped_stops_reading_and_starts_again(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    """A dropped database closes the change stream, whose reads then answer nothing at
    once, forever: the relay must stop reading (not spin, starving every other task and
    the process's signal handlers) and start again on the new collection."""
    collector = Collector()
    await collector.start(amqp, topology, site_id=4)
    relay = Relay(store, amqp, topology, max_await_ms=10)
    task = asyncio.create_task(relay.run_forever(backoff=0.1, max_backoff=0.5))
    try:
        await store.jobs.create_many([Job(app_id=1, site_id=4, workdir="d/0")])
        await collector.wait_for(1)
        await store.client.drop_database(store.db.name)  # the saved point goes with it
        await asyncio.wait_for(asyncio.sleep(0.5), 5)  # the event loop still turns
        await ensure_schema(store.db)  # as the next process to open the database does
        await store.jobs.create_many([Job(app_id=1, site_id=4, workdir="d/1")])
        await collector.wait_for(2, timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # the new database's first job (ids start again at 1) was published too
    assert len({e.id for e in collector.events}) >= 2
