"""The least a durable submit-to-result round trip (W3) can cost on this machine.

Whatever runs it, one W3 round trip in balsam_mq holds, one after the other: the job's
creation (a transaction with a majority write concern; its id from the process's
block), the launcher's read of the delivered job, its claim (a transaction on what it
read), the run's outcome (a transaction on what the claim left, passing the default
steps through to JOB_FINISHED), two deliveries through RabbitMQ (the runnable job to a
launcher, the finished job to the client) and the client's read of the result. This
script times each of those alone, with balsam_mq's own store code and a bare RabbitMQ
queue, one at a time with a pause between (as W3 has them), before any balsam_mq
process runs; and prints their sum, the floor under W3's p50 here.

For comparison, what one document costs MongoDB here by write concern (``w: 1``, as a
result backend writes by default; ``w: 1, j: true``, journaled; and ``w: "majority"``,
journaled and acknowledged by a majority, as every balsam_mq transition commits), what a
transaction of two inserts costs with each, and what a 4 KiB write with ``fdatasync``
costs the file system the bench's mongod keeps its data on: the gap between the inserts
is mongod's commit path, not the disk.

Per run: ``--samples`` of each step; the figures are min / median / max over ``--runs``
runs of each step's median.

    python bench/floor.py [--samples 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aio_pika
from _env import bench_settings, mongo_url
from pymongo import WriteConcern
from pymongo.read_concern import ReadConcern
from workloads import spread

from balsam_mq.broker import open_amqp
from balsam_mq.domain import Actor, App, Change, Job, JobState
from balsam_mq.store import Store, open_store

S = JobState
PAUSE_S = 0.002  # between two samples: W3's steps meet an idle machine, not a queue
# what one W3 round trip holds, in order, and how many times
STEPS = (("create", 1), ("claim", 1), ("outcome", 1), ("delivery", 2), ("read", 2))
# one insert and one transaction of two inserts (as a transition: the job, its events)
# with each write concern; the transitions above commit with "majority"
CONCERNS = (
    ("w: 1", WriteConcern(w=1)),
    ("w: 1, j", WriteConcern(w=1, j=True)),
    ("majority", WriteConcern(w="majority")),
)
COMPARED = (
    *((f"insert {name}", f"insert, write concern {name}") for name, _ in CONCERNS),
    *((f"txn {name}", f"transaction of 2 inserts, {name}") for name, _ in CONCERNS),
    ("fdatasync", "4 KiB write + fdatasync"),
)


async def timed(samples: int, step: Callable[[int], Awaitable[object]]) -> float:
    """The median time of ``step(i)`` over ``samples`` calls, a pause before each."""
    times = []
    for i in range(samples):
        await asyncio.sleep(PAUSE_S)
        t0 = time.perf_counter()
        await step(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def durable_steps(store: Store, samples: int) -> dict[str, float]:
    app = await store.apps.upsert(App(site_id=1, name="Floor", hooks=[]))
    assert app.id is not None
    apps = {app.id: app}
    ids: list[int] = []
    known: dict[int, dict[str, Any]] = {}  # what the launcher read, then what its claim left

    async def create(i: int) -> None:
        # as the SDK creates a job: from its document, with the app it was checked against
        made: list[dict[str, Any]] = []
        doc = Job(app_id=app.id, site_id=1, workdir=f"f/{i}").to_doc()
        await store.jobs.create_documents([doc], 1, lambda _, docs: made.extend(docs), apps=apps)
        assert made[0]["state"] == S.PREPROCESSED.value, made[0]["state"]
        ids.append(int(made[0]["_id"]))

    async def claim(i: int) -> None:
        fields = {"session_id": 1}
        change = Change(
            ids[i], S.PREPROCESSED, S.RUNNING, fields=fields, by=Actor.LAUNCHER, known=known[ids[i]]
        )
        result = await store.jobs.transition([change])
        assert result.all_moved
        known.update(result.after)

    async def outcome(i: int) -> None:
        change = Change(
            ids[i], S.RUNNING, S.RUN_DONE, by=Actor.LAUNCHER, held_by=1, known=known[ids[i]]
        )
        result = await store.jobs.transition([change], apps=apps)
        assert result.final[ids[i]] is S.JOB_FINISHED

    async def read(i: int) -> None:
        await store.jobs.get_many([ids[i]], known=known)

    figures = {"create": await timed(samples, create), "read": await timed(samples, read)}
    figures["claim"] = await timed(samples, claim)
    figures["outcome"] = await timed(samples, outcome)
    return figures


async def single_writes(store: Store, samples: int) -> dict[str, float]:
    """One document inserted, and a transaction of two inserts in two collections
    committed, with each write concern (not part of the sum)."""
    figures: dict[str, float] = {}
    for name, concern in CONCERNS:
        insert = store.db.get_collection("floor_writes", write_concern=concern).insert_one

        async def one(i: int, insert: Any = insert) -> None:
            await insert({"i": i})

        figures[f"insert {name}"] = await timed(samples, one)

        async def transaction(i: int, concern: WriteConcern = concern) -> None:
            async with store.client.start_session() as session:

                async def body(s: Any) -> None:
                    await store.db["floor_a"].insert_one({"i": i}, session=s)
                    await store.db["floor_b"].insert_one({"i": i}, session=s)

                await session.with_transaction(
                    body, read_concern=ReadConcern("snapshot"), write_concern=concern
                )

        figures[f"txn {name}"] = await timed(samples, transaction)
    return figures


def fdatasync_s(samples: int) -> float:
    """The median time of a 4 KiB append and ``fdatasync`` in a file of the file system
    the bench's mongod writes to (the temporary directory)."""
    times = []
    with tempfile.TemporaryFile() as f:
        for _ in range(samples):
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fdatasync(f.fileno())
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def delivery(amqp_url: str, samples: int) -> float:
    """A persistent message published with a confirm on one connection, received by a
    consumer on another."""
    async with open_amqp(amqp_url) as sender, open_amqp(amqp_url) as receiver:
        inbox: asyncio.Queue[float] = asyncio.Queue()
        rx = await receiver.channel()
        queue = await rx.declare_queue(f"floor-{uuid.uuid4().hex[:8]}", exclusive=True)

        async def arrived(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            inbox.put_nowait(time.perf_counter())

        await queue.consume(arrived)
        tx = await sender.channel(publisher_confirms=True)
        body = b'{"kind": "job", "to_state": "PREPROCESSED"}'

        async def hop(i: int) -> None:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await tx.default_exchange.publish(message, routing_key=queue.name)
            await inbox.get()

        return await timed(samples, hop)


async def one_run(url: str, samples: int) -> dict[str, float]:
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        try:
            figures = await durable_steps(store, samples)
            figures["delivery"] = await delivery(settings.amqp_url, samples)
            figures.update(await single_writes(store, samples))
            figures["fdatasync"] = fdatasync_s(samples)
        finally:
            await store.client.drop_database(settings.db)
    return figures


async def main(samples: int, runs: int) -> None:
    with mongo_url() as url:
        results = [await one_run(url, samples) for _ in range(runs)]
    print(
        f"each step alone, median of {samples} with {PAUSE_S * 1000:g} ms pauses; "
        f"{runs} runs: min / median / max, ms"
    )
    for name, count in STEPS:
        ms = [1000 * r[name] for r in results]
        print(f"  {name:9s} x{count}  {spread(ms, '{:.2f}')}")
    floors = [1000 * sum(r[name] * count for name, count in STEPS) for r in results]
    print(f"a W3 round trip holds at least their sum: {spread(floors, '{:.1f}')} ms")
    print("for comparison, one insert, a transaction of two, and the disk's own flush, ms:")
    for name, what in COMPARED:
        ms = [1000 * r[name] for r in results]
        print(f"  {what:34s} {spread(ms, '{:.2f}')}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    asyncio.run(main(a.samples, a.runs))
