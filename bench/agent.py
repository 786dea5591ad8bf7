"""Jobs per second through the site agent, from submit to JOB_FINISHED, default and custom hooks.

Jobs are created with bulk_create; a stand-in launcher (a consumer of the runnable
queue) moves each PREPROCESSED job to RUNNING and RUN_DONE through the store, so the
figure is the agent's (plus relay and broker), not a launcher's. Two apps:

* ``Plain``: default hooks, taken as batch transitions without the hook pool;
* ``Hooked``: trivial preprocess/postprocess overrides, so every job's hooks run in the
  worker pool (measured with 1 and 2 worker processes).

    python bench/agent.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import bench_settings, mongo_url

import balsam_mq
from balsam_mq import ApplicationDefinition, Job
from balsam_mq.broker import Consumer, build_topology, delete_namespace, open_amqp
from balsam_mq.domain import Actor, Change, Delivery, JobState, Site
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store, open_store

S = JobState


class Plain(ApplicationDefinition):
    site = "bench"
    command_template = "true"


class Hooked(ApplicationDefinition):
    site = "bench"
    command_template = "true"

    def preprocess(self) -> None:
        self.job.state = "PREPROCESSED"

    def postprocess(self) -> None:
        self.job.state = "POSTPROCESSED"


class StandIn:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(self, batch: Sequence[Delivery]) -> None:
        claims = [
            Change(e.job_id, S(e.to_state), S.RUNNING, by=Actor.LAUNCHER)
            for e in (e for d in batch for e in d.events())
            if e.job_id is not None
        ]
        moved = (await self.store.jobs.transition(claims)).moved
        await self.store.jobs.transition(
            [Change(i, S.RUNNING, S.RUN_DONE, by=Actor.LAUNCHER) for i in moved]
        )


async def run(url: str, app: type[ApplicationDefinition], n: int, workers: int) -> float:
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        async with open_amqp(settings.amqp_url) as amqp, balsam_mq.connect(settings):
            topology = build_topology(settings.namespace)
            site = await store.sites.create(Site(name="bench"))
            assert site.id is not None
            with tempfile.TemporaryDirectory() as tmp:
                site_dir = SiteDirectory.create(Path(tmp) / "site", name="bench", site_id=site.id)
                hooks = f"hooks: {{workers: {workers}, batch_size: 200}}"
                config = parse_config(f"site_id: {site.id}\nname: bench\n{hooks}")
                agent = SiteAgent(store, amqp, topology, site, site_dir, config, prefetch=1000)
                agent_task = asyncio.create_task(agent.run())
                stand_in = Consumer(
                    amqp,
                    topology,
                    topology.site(site.id).runnable,
                    StandIn(store),
                    prefetch=1000,
                    batch_size=500,
                )
                stand_in_task = asyncio.create_task(stand_in.run())
                await app.sync()
                t0 = time.perf_counter()
                jobs = await Job.objects.bulk_create(
                    [app.submit(f"b/{i}", save=False) for i in range(n)]
                )
                ids = [j.id for j in jobs]
                while (
                    await store.db["jobs"].count_documents(
                        {"_id": {"$in": ids}, "state": "JOB_FINISHED"}
                    )
                    < n
                ):
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - t0
                await stand_in.stop()
                await agent.stop()
                await asyncio.gather(agent_task, stand_in_task, return_exceptions=True)
                channel = await amqp.channel()
                await delete_namespace(channel, topology, [site.id])
            await store.client.drop_database(settings.db)
    return elapsed


async def main(n: int) -> None:
    with mongo_url() as url:
        print(f"{n:,} jobs, submit → JOB_FINISHED (8 transitions each), one site agent")
        for app, workers in ((Plain, 1), (Plain, 2), (Hooked, 1), (Hooked, 2)):
            elapsed = await run(url, app, n, workers)
            print(
                f"  {app.__name__:7s} hooks, {workers} worker process(es): "
                f"{elapsed:6.1f} s  {n / elapsed:8,.0f} jobs/s"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000)
    asyncio.run(main(p.parse_args().jobs))
