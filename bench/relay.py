"""Events per second through transition -> events -> relay -> RabbitMQ -> a consumer.

20,000 transitions committed in batches of 500; the clock runs from the first commit
to the last event acknowledged by the consumer.

    python bench/relay.py [--jobs 4000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from _env import bench_settings, mongo_url

from balsam_mq.broker import Consumer, build_topology, declare_core, delete_namespace, open_amqp
from balsam_mq.domain import Change, Delivery, Job, JobState
from balsam_mq.relay import Relay
from balsam_mq.store import open_store

S = JobState
STEPS = [S.READY, S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED]


class Counter:
    def __init__(self, target: int) -> None:
        self.n = 0
        self.target = target
        self.done = asyncio.Event()

    async def handle(self, batch: Sequence[Delivery]) -> None:
        self.n += len(batch)
        if self.n >= self.target:
            self.done.set()


async def main(n_jobs: int, batch: int) -> None:
    with mongo_url() as url:
        async with bench_settings(url) as settings, open_store(url, settings.db) as store:
            async with open_amqp(settings.amqp_url) as amqp:
                topology = build_topology(settings.namespace)
                channel = await amqp.channel()
                await declare_core(channel, topology)
                jobs = await store.jobs.create_many(
                    [Job(app_id=1, site_id=1, workdir=f"b/{i}") for i in range(n_jobs)]
                )
                ids = [j.id for j in jobs if j.id is not None]
                steps = list(itertools.pairwise(STEPS))
                n_transitions = len(ids) * len(steps)
                # one consumer on a queue bound to every job event of the site
                spec = topology.private("bench", ("job.1.#",))
                counter = Counter(n_transitions + len(ids))  # + the CREATED events
                consumer = Consumer(amqp, topology, spec, counter, prefetch=1000, batch_size=500)
                await consumer.start()
                consumer_task = asyncio.create_task(consumer.run())
                relay = Relay(store, amqp, topology)
                relay_task = asyncio.create_task(relay.run())
                await asyncio.sleep(0.5)  # let the relay drain the CREATED events first
                start_count = counter.n
                t0 = time.perf_counter()
                for src, dst in steps:
                    for i in range(0, len(ids), batch):
                        chunk = ids[i : i + batch]
                        await store.jobs.transition([Change(j, src, dst) for j in chunk])
                t_commit = time.perf_counter() - t0
                await asyncio.wait_for(counter.done.wait(), 600)
                elapsed = time.perf_counter() - t0
                relay_task.cancel()
                await consumer.stop()
                consumer_task.cancel()
                await asyncio.gather(relay_task, consumer_task, return_exceptions=True)
                await delete_namespace(channel, topology, [1])
                await store.client.drop_database(settings.db)
                delivered = counter.n - start_count
                print(f"transitions committed : {n_transitions} in batches of {batch}")
                print(
                    f"commit time           : {t_commit:.2f} s ({n_transitions / t_commit:,.0f}/s)"
                )
                print(f"events delivered      : {delivered} (plus {start_count} CREATED before)")
                print(f"end to end            : {elapsed:.2f} s")
                print(f"throughput            : {n_transitions / elapsed:,.0f} events/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4000, help="jobs; each makes 5 transitions")
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.batch))
