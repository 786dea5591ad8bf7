"""Events per second through the outbox relay: ``events`` change stream → RabbitMQ → a consumer.

Two measurements, each on a fresh database and namespace, 3 runs, min / median / max:

* backlog: ``--jobs`` jobs make 5 transitions each (6 events with their creation) while
  no relay runs; then a relay starts and the clock runs until a consumer bound to every
  job event of the site has received them all: the relay's own throughput;
* live: the same transitions committed in batches of ``--batch`` while the relay runs;
  the commit rate, and how long after the last commit the last event arrived.

    python bench/relay.py [--jobs 10000] [--batch 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import bench_settings, mongo_url
from workloads import spread

from balsam_mq.broker import Consumer, build_topology, declare_core, delete_namespace, open_amqp
from balsam_mq.domain import Change, Delivery, Job, JobState
from balsam_mq.relay import Relay
from balsam_mq.store import Store, open_store

S = JobState
STEPS = [S.READY, S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED]


class Counter:
    def __init__(self, target: int) -> None:
        self.n = 0
        self.target = target
        self.done = asyncio.Event()

    async def handle(self, batch: Sequence[Delivery]) -> None:
        self.n += sum(len(d.events()) for d in batch)
        if self.n >= self.target:
            self.done.set()


async def commit(store: Store, ids: list[int], batch: int) -> None:
    for src, dst in itertools.pairwise(STEPS):
        for i in range(0, len(ids), batch):
            await store.jobs.transition([Change(j, src, dst) for j in ids[i : i + batch]])


async def one_run(url: str, n_jobs: int, batch: int, live: bool) -> dict[str, float]:
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        async with open_amqp(settings.amqp_url) as amqp:
            topology = build_topology(settings.namespace)
            channel = await amqp.channel()
            await declare_core(channel, topology)
            jobs = []
            for i in range(0, n_jobs, 10_000):  # no app: every event is sent to a queue
                chunk = range(i, min(n_jobs, i + 10_000))
                jobs += await store.jobs.create_many(
                    [Job(app_id=0, site_id=1, workdir=f"b/{k}") for k in chunk]
                )
            ids = [j.id for j in jobs if j.id is not None]
            total = len(ids) * len(STEPS)  # creation events + 5 transitions each
            counter = Counter(total)
            spec = topology.private("bench", ("job.1.#",))
            consumer = Consumer(amqp, topology, spec, counter, prefetch=2000, batch_size=1000)
            await consumer.start()
            consumer_task = asyncio.create_task(consumer.run())
            out: dict[str, float] = {}
            if not live:
                await commit(store, ids, batch)
                t0 = time.perf_counter()
            relay_task = asyncio.create_task(Relay(store, amqp, topology).run())
            if live:
                t0 = time.perf_counter()
                await commit(store, ids, batch)
                out["commit_s"] = time.perf_counter() - t0
            await asyncio.wait_for(counter.done.wait(), 900)
            out["elapsed_s"] = time.perf_counter() - t0
            out["events"] = counter.n
            relay_task.cancel()
            await consumer.stop()
            consumer_task.cancel()
            await asyncio.gather(relay_task, consumer_task, return_exceptions=True)
            await delete_namespace(channel, topology, [1])
            await store.client.drop_database(settings.db)
            return out


async def main(n_jobs: int, batch: int, runs: int) -> None:
    with mongo_url() as url:
        backlog = [await one_run(url, n_jobs, batch, live=False) for _ in range(runs)]
        live = [await one_run(url, n_jobs, batch, live=True) for _ in range(runs)]
    events = backlog[0]["events"]
    print(f"{int(events):,} events ({n_jobs:,} jobs x 6), {runs} runs: min / median / max")
    rate = [r["events"] / r["elapsed_s"] for r in backlog]
    commits = [n_jobs * 5 / r["commit_s"] for r in live]
    end_to_end = [r["events"] / r["elapsed_s"] for r in live]
    lag = [r["elapsed_s"] - r["commit_s"] for r in live]
    n = "{:,.0f}"
    print(f"  backlog, relay alone : {spread(rate, n)} events/s   (target >= 20,000)")
    print(f"  live, commits        : {spread(commits, n)} transitions/s, batches of {batch}")
    print(f"  live, end to end     : {spread(end_to_end, n)} events/s")
    print(f"  live, relay lag      : {spread(lag, '{:.2f}')} s after the last commit")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000, help="jobs; each makes 5 transitions")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.batch, a.runs))
