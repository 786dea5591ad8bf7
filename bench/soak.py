"""A long run: 100,000 jobs through a real site agent and launcher, with their memory sampled.

Python ``add`` jobs are submitted in waves (each wave once the one before has finished,
so the client never holds more than a wave); after each wave the resident set size of
every process is printed: the site agent (which runs the relay), the launcher, and the
launcher's helpers (warm pool server and workers, sentinel). The first waves raise the
agent's memory to the high-water mark of its buffers (a wave's backlog of events);
memory is flat when the second half of the run adds nothing to it.

    python bench/soak.py [--jobs 100000] [--wave 5000] [--slots 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import e2e  # noqa: E402
from _env import bench_settings, children, mongo_url, stop_processes  # noqa: E402

import balsam_mq  # noqa: E402
from balsam_mq import Job  # noqa: E402
from balsam_mq.broker import build_topology, delete_namespace, open_amqp  # noqa: E402
from balsam_mq.domain import Site  # noqa: E402
from balsam_mq.site.directory import SiteDirectory  # noqa: E402
from balsam_mq.store import open_store  # noqa: E402


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def main(n: int, wave: int, slots: int) -> None:
    with mongo_url() as url:
        async with bench_settings(url) as settings, open_store(url, settings.db) as store:
            async with open_amqp(settings.amqp_url) as amqp, balsam_mq.connect(settings):
                topology = build_topology(settings.namespace)
                with tempfile.TemporaryDirectory() as tmp:
                    site = await store.sites.create(
                        Site(name="bench", path=str(Path(tmp) / "site"))
                    )
                    assert site.id is not None
                    site_dir = SiteDirectory.create(
                        Path(tmp) / "site", name="bench", site_id=site.id
                    )
                    procs = await e2e.start(settings, site_dir, slots)
                    agent, launcher = procs[0].pid, procs[1].pid
                    try:
                        await e2e.Add.sync()
                        await e2e.ready(store, site_dir)
                        print(f"{n:,} jobs in waves of {wave:,}; resident memory in MiB")
                        print(
                            f"{'jobs done':>10s} {'jobs/s':>7s} {'agent+relay':>12s} "
                            f"{'launcher':>9s} {'helpers':>8s}"
                        )
                        samples: list[tuple[float, float, float]] = []
                        done, t0 = 0, time.perf_counter()
                        while done < n:
                            size = min(wave, n - done)
                            jobs = await Job.objects.bulk_create(
                                [
                                    e2e.Add.submit(
                                        f"soak/{done + i}",
                                        x=i,
                                        y=1,
                                        save=False,
                                        node_packing_count=slots,
                                    )
                                    for i in range(size)
                                ]
                            )
                            await Job.objects.wait(jobs, timeout=3600)
                            done += size
                            del jobs
                            helpers = sum(rss_mib(p) for p in children(launcher))
                            sample = (rss_mib(agent), rss_mib(launcher), helpers)
                            samples.append(sample)
                            rate = done / (time.perf_counter() - t0)
                            print(
                                f"{done:>10,} {rate:>7.0f} {sample[0]:>12.1f} "
                                f"{sample[1]:>9.1f} {sample[2]:>8.1f}",
                                flush=True,
                            )
                        # the first waves fill caches, pools and the allocator's arenas
                        warm, last = samples[len(samples) // 2], samples[-1]
                        print("growth over the second half of the run (MiB):")
                        for name, a, b in zip(
                            ("agent+relay", "launcher", "helpers"), warm, last, strict=True
                        ):
                            print(f"  {name:12s} {a:8.1f} -> {b:8.1f}  ({b - a:+.1f})")
                    finally:
                        await stop_processes(procs)
                    channel = await amqp.channel()
                    await delete_namespace(channel, topology, [site.id])
                await store.client.drop_database(settings.db)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--wave", type=int, default=5_000)
    p.add_argument("--slots", type=int, default=2)
    a = p.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(a.jobs, a.wave, a.slots))
