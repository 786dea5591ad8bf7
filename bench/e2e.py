"""Jobs per second end to end: SDK bulk_create → site agent → a real launcher → JOB_FINISHED.

Everything is real: the relay, the agent's consumers, the launcher claiming from the
runnable queue and starting one process per job on this host. Three workloads:

* ``Shell``: ``command_template = "true"`` (bash per job);
* ``Adder``: a ``run()`` app, with the warm pool (forked from a warm interpreter) and
  without it (a fresh interpreter per job).

    python bench/e2e.py [--jobs 1000] [--slots 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import bench_settings, mongo_url

import balsam_mq
from balsam_mq import ApplicationDefinition, Job
from balsam_mq.broker import build_topology, delete_namespace, open_amqp
from balsam_mq.domain import Site
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings
from balsam_mq.launcher.main import build_allocation
from balsam_mq.launcher.pilot import Pilot
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import open_store


def apps() -> dict[str, type[ApplicationDefinition]]:
    class Shell(ApplicationDefinition):
        site = "bench"
        command_template = "true"

    class Adder(ApplicationDefinition):
        site = "bench"

        def run(self, x: int, y: int) -> int:
            return x + y

    return {"Shell": Shell, "Adder": Adder}


async def run(url: str, app_name: str, n: int, slots: int, warm: bool) -> tuple[float, Any]:
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        async with open_amqp(settings.amqp_url) as amqp, balsam_mq.connect(settings):
            topology = build_topology(settings.namespace)
            with tempfile.TemporaryDirectory() as tmp:
                site = await store.sites.create(Site(name="bench", path=str(Path(tmp) / "site")))
                assert site.id is not None
                site_dir = SiteDirectory.create(Path(tmp) / "site", name="bench", site_id=site.id)
                config = parse_config(
                    f"site_id: {site.id}\nname: bench\nhooks: {{batch_size: 200}}"
                )
                agent = SiteAgent(store, amqp, topology, site, site_dir, config, prefetch=1000)
                agent_task = asyncio.create_task(agent.run())
                launcher_config = LauncherConfig(
                    site_id=site.id,
                    data_dir=site_dir.data,
                    wall_time_min=60,
                    settings=LauncherSettings(cores_per_node=slots, warm_pool=warm),
                )
                pool, executor = await build_allocation(launcher_config)
                pilot = Pilot(store, amqp, topology, launcher_config, pool=pool, executor=executor)
                pilot_task = asyncio.create_task(pilot.run())
                app = apps()[app_name]
                await app.sync()
                params: dict[str, Any] = {"x": 1, "y": 2} if app_name == "Adder" else {}
                t0 = time.perf_counter()
                jobs = await Job.objects.bulk_create(
                    [
                        app.submit(f"b/{i}", save=False, node_packing_count=slots, **params)
                        for i in range(n)
                    ]
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
                pilot.stop_claiming("bench over")
                report = await pilot_task
                await agent.stop()
                await asyncio.gather(agent_task, return_exceptions=True)
                channel = await amqp.channel()
                await delete_namespace(channel, topology, [site.id])
            await store.client.drop_database(settings.db)
    return elapsed, report


async def main(n: int, slots: int) -> None:
    with mongo_url() as url:
        print(f"{n:,} jobs, submit → JOB_FINISHED, one agent, one launcher with {slots} slots")
        for app_name, warm in (("Shell", True), ("Adder", True), ("Adder", False)):
            elapsed, report = await run(url, app_name, n, slots, warm)
            how = "" if app_name == "Shell" else (" (warm pool)" if warm else " (fresh python)")
            print(
                f"  {app_name + how:22s} {elapsed:6.1f} s  {n / elapsed:7,.1f} jobs/s  "
                f"(claimed {report.claimed}, done {report.done})"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--slots", type=int, default=8, help="Jobs the launcher runs at once.")
    args = p.parse_args()
    asyncio.run(main(args.jobs, args.slots))
