"""Jobs per second through the site pipeline: store, relay, site agent(s) and stand-in launchers.

Jobs are created with ``bulk_create`` and followed to JOB_FINISHED with every transition
and event persisted and published. Stand-in launchers are processes that consume the
runnable queue and, for each batch, claim the jobs (PREPROCESSED → RUNNING) and report
them done (RUNNING → RUN_DONE, and on through the steps passed through) in two
transactions, as a launcher does, without running anything: the figure is the
pipeline's, not a launcher's. Site agents are real ``balsam-mq site agent`` processes
(each runs a relay). Two apps:

* ``Plain``: default hooks: every step but the run is passed through, no agent consumer
  is involved (measured with 1, 2 and 4 stand-ins and with 1 and 2 agents);
* ``Hooked``: its own ``preprocess`` and ``postprocess``, run in the agent's hook pool
  (measured with 1 and 2 hook worker processes).

    python bench/agent.py [--jobs 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _env import bench_settings, mongo_url, start_processes, stop_processes  # noqa: E402
from workloads import spread  # noqa: E402

import balsam_mq  # noqa: E402
from balsam_mq import ApplicationDefinition, Job  # noqa: E402
from balsam_mq.broker import Consumer, build_topology, delete_namespace, open_amqp  # noqa: E402
from balsam_mq.domain import Actor, Change, Delivery, JobState, Site  # noqa: E402
from balsam_mq.settings import Settings, load_settings  # noqa: E402
from balsam_mq.site.directory import SiteDirectory  # noqa: E402
from balsam_mq.store import Store, open_store  # noqa: E402

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


# --- a stand-in launcher (its own process) ----------------------------------------------


class StandIn:
    """Claims every runnable job it is handed, then reports it done: two transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(self, batch: Sequence[Delivery]) -> None:
        claims = [
            Change(e.job_id, S(e.to_state), S.RUNNING, fields={"session_id": 0}, by=Actor.LAUNCHER)
            for e in (e for d in batch for e in d.events())
            if e.job_id is not None
        ]
        moved = (await self.store.jobs.transition(claims)).moved
        await self.store.jobs.transition(
            [Change(i, S.RUNNING, S.RUN_DONE, fields={"return_code": 0}) for i in moved]
        )


async def stand_in(site_id: int) -> None:
    settings = load_settings()
    async with (
        open_store(settings.mongodb_url, settings.db, init_schema=False) as store,
        open_amqp(settings.amqp_url) as amqp,
    ):
        topology = build_topology(settings.namespace)
        spec = topology.site(site_id).runnable
        consumer = Consumer(amqp, topology, spec, StandIn(store), prefetch=1000, batch_size=500)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(consumer.stop()))
        await consumer.run()


# --- the measurement --------------------------------------------------------------------


async def start(
    settings: Settings, site_dir: SiteDirectory, site_id: int, agents: int, stand_ins: int
) -> list[asyncio.subprocess.Process]:
    commands = [[sys.executable, "-m", "balsam_mq.cli", "site", "agent", str(site_dir.path)]]
    commands = commands * agents
    commands += [[sys.executable, __file__, "--stand-in", str(site_id)]] * stand_ins
    return await start_processes(settings, commands, site_dir.logs)


async def agents_running(site_dir: SiteDirectory, agents: int) -> None:
    # the agent holding the pid file logs to agent.log, those alongside it to agent-<host>-<pid>.log
    def running() -> int:
        return sum(log.read_text().count(") running") for log in site_dir.logs.glob("agent*.log"))

    while running() < agents:
        await asyncio.sleep(0.1)


async def one_run(
    url: str, app: type[ApplicationDefinition], n: int, agents: int, stand_ins: int, workers: int
) -> float:
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        async with open_amqp(settings.amqp_url) as amqp, balsam_mq.connect(settings):
            topology = build_topology(settings.namespace)
            site = await store.sites.create(Site(name="bench"))
            assert site.id is not None
            with tempfile.TemporaryDirectory() as tmp:
                site_dir = SiteDirectory.create(Path(tmp) / "site", name="bench", site_id=site.id)
                text = site_dir.settings_file.read_text()
                text = text.replace("workers: 2", f"workers: {workers}")
                site_dir.settings_file.write_text(text.replace("batch_size: 50", "batch_size: 500"))
                await app.sync()
                procs = await start(settings, site_dir, site.id, agents, stand_ins)
                try:
                    await agents_running(site_dir, agents)
                    t0 = time.perf_counter()
                    jobs = await Job.objects.bulk_create(
                        [app.submit(f"b/{i}", save=False) for i in range(n)]
                    )
                    await Job.objects.wait(jobs, timeout=900)
                    elapsed = time.perf_counter() - t0
                    assert all(j.state == "JOB_FINISHED" for j in jobs)
                finally:
                    await stop_processes(procs)
                channel = await amqp.channel()
                await delete_namespace(channel, topology, [site.id])
            await store.client.drop_database(settings.db)
    return elapsed


CONFIGS = [  # app, agents, stand-in launchers, hook workers
    (Plain, 1, 1, 2),
    (Plain, 1, 2, 2),
    (Plain, 1, 4, 2),
    (Plain, 2, 1, 2),
    (Plain, 2, 2, 2),
    (Hooked, 1, 2, 1),
    (Hooked, 1, 2, 2),
]


async def main(n: int, runs: int) -> None:
    print(f"{n:,} jobs, submit → JOB_FINISHED, {runs} runs: jobs/s min / median / max")
    with mongo_url() as url:
        for app, agents, stand_ins, workers in CONFIGS:
            times = [await one_run(url, app, n, agents, stand_ins, workers) for _ in range(runs)]
            label = f"{app.__name__:6s} hooks, {agents} agent(s), {stand_ins} stand-in(s)"
            if app is Hooked:
                label += f", {workers} hook worker(s)"
            target = "  (target >= 2,000)" if app is Plain else ""
            print(f"  {label:62s} {spread([n / t for t in times], '{:,.0f}')}{target}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--stand-in", type=int, metavar="SITE_ID", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stand_in is not None:
        asyncio.run(stand_in(a.stand_in))
    else:
        asyncio.run(main(a.jobs, a.runs))
