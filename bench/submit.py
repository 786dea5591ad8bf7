"""Jobs per second through the SDK's ``Job.objects.bulk_create``, and the client's peak memory.

For each size, jobs are built with ``App.submit(..., save=False)`` (no I/O; timed
apart), then created with one ``bulk_create`` call: inputs checked and parameters
serialized for every job first, ids reserved in one block, then jobs and their creation
events inserted a chunk per transaction (``chunk_sizes`` in ``balsam_mq/store/creation.py``),
three chunks in flight. Peak memory is the client process's maximum resident set size so far.

    python bench/submit.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench helpers, and this working tree's package

from _env import bench_settings, mongo_url, peak_rss_mib  # noqa: E402

from balsam_mq import ApplicationDefinition, Job, Site, connect  # noqa: E402
from balsam_mq.store import open_store  # noqa: E402


class Sim(ApplicationDefinition):
    """A command-template app with two parameters, one optional."""

    site = "bench"
    command_template = "sim.exe --steps {{ steps }} --mode {{ mode }}"
    parameters = {"mode": {"required": False, "default": "fast"}}


async def run(sizes: list[int]) -> None:
    with mongo_url() as url:
        async with (
            bench_settings(url) as settings,
            open_store(url, settings.db) as store,
            connect(settings),
        ):
            try:
                await Site.objects.create(name="bench")
                await Sim.sync()
                print(f"client start: peak RSS {peak_rss_mib():.0f} MiB")
                for n in sizes:
                    gc.collect()
                    t0 = time.perf_counter()
                    jobs = [
                        Sim.submit(f"bench/{i}", steps=i, save=False, tags={"batch": str(n)})
                        for i in range(n)
                    ]
                    built = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    await Job.objects.bulk_create(jobs)
                    created = time.perf_counter() - t0
                    assert await Job.objects.filter(tags={"batch": str(n)}).count() == n
                    print(
                        f"bulk_create {n:>7,} jobs: {n / created:>8,.0f} jobs/s "
                        f"({created:.2f} s; building them: {n / built:,.0f} jobs/s) "
                        f"peak RSS {peak_rss_mib():.0f} MiB"
                    )
                    del jobs
                    await Job.objects.all().delete()
            finally:
                await store.client.drop_database(settings.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    asyncio.run(run(parser.parse_args().sizes))


if __name__ == "__main__":
    main()
