"""End to end on the local stack: one site agent and one launcher with 2 slots (real processes).

Three workloads, each run 3 times on a fresh database and site; min / median / max:

* W1: 1,000 jobs running ``true``: bulk submit → all JOB_FINISHED (makespan, jobs/s);
* W2: 1,000 Python ``add(x, y)`` jobs, every result collected through ``as_completed``;
* W3: 30 sequential ``add(1, 1)`` submit-to-result latencies after 5 warm-ups (p50, p95).

The same workloads run on Celery and Parsl in ``bench/compare.py`` (see ``workloads.py``).

``--workloads``: only those named (W1 W2 W3 by default), e.g. ``--workloads W2 W3`` for
the Python jobs alone. ``--cpu``: also the CPU each process used during W1 and W2, in
ms per job (user and system; from ``/proc``, so Linux only): the launcher, its helpers
(warm pool server and workers, sentinel: those alive at the end of the workload), every
``mongod`` and RabbitMQ node on the machine, the site agent and the submitting client.

    python bench/e2e.py [--jobs 1000] [--latency 30] [--runs 3] [--slots 2] [--cpu]
                        [--workloads W1 W2 W3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import (
    bench_settings,
    children,
    cpu_seconds,
    file_creation_us,
    mongo_url,
    named,
    scratch,
    scratch_root,
    start_processes,
    stop_processes,
)
from workloads import WARMUP, Run, check_sum, p50_p95, spread

import balsam_mq
from balsam_mq import ApplicationDefinition, Job
from balsam_mq.broker import build_topology, delete_namespace, open_amqp
from balsam_mq.domain import Site
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store, open_store


class Shell(ApplicationDefinition):
    site = "bench"
    command_template = "true"


class Add(ApplicationDefinition):
    site = "bench"

    def run(self, x: int, y: int) -> int:
        return x + y


async def start(
    settings: Settings, site_dir: SiteDirectory, slots: int
) -> list[asyncio.subprocess.Process]:
    cli = [sys.executable, "-m", "balsam_mq.cli"]
    commands = [
        [*cli, "site", "agent", str(site_dir.path)],
        [*cli, "launcher", "--site", "bench", "--wall-time", "60", "--cores-per-node", str(slots)],
    ]
    return await start_processes(settings, commands, site_dir.logs)


async def ready(store: Store, site_dir: SiteDirectory) -> None:
    """Until the agent logs that it runs and the launcher has a session."""
    log = site_dir.logs / "agent.log"
    while not (log.exists() and ") running" in log.read_text()):
        await asyncio.sleep(0.1)
    while not await store.db["sessions"].count_documents({}):
        await asyncio.sleep(0.1)


# process -> (user, system) CPU seconds so far
Usage = dict[str, tuple[float, float]]


def usage(agent: int, launcher: int) -> Usage:
    groups = {
        "launcher": [launcher],
        "its helpers": children(launcher),
        "mongod": named("mongod"),
        "site agent": [agent, *children(agent)],
        "client": [os.getpid()],
        "RabbitMQ": named("beam.smp"),
    }
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


def per_job(before: Usage, after: Usage, n: int) -> Usage:
    """CPU ms per job of each process between two samples."""
    spent: Usage = {}
    for name, (user, system) in after.items():
        user0, system0 = before[name]
        spent[name] = (1000 * (user - user0) / n, 1000 * (system - system0) / n)
    return spent


WORKLOADS = ("W1", "W2", "W3")


async def measure(
    url: str,
    n: int,
    n_latency: int,
    slots: int,
    cpu: dict[str, list[Usage]] | None = None,
    workloads: Sequence[str] = WORKLOADS,
) -> Run:
    """One run of ``workloads`` (W1, W2 and W3) on a fresh database, site, site agent and
    launcher (a workload left out: NaN); ``cpu``: W1's and W2's CPU per job of each
    process are appended to it."""
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        async with open_amqp(settings.amqp_url) as amqp, balsam_mq.connect(settings):
            topology = build_topology(settings.namespace)
            tmp = scratch("e2e-")  # kept until the bench ends: see _env.scratch_root
            site = await store.sites.create(Site(name="bench", path=str(Path(tmp) / "site")))
            assert site.id is not None
            site_dir = SiteDirectory.create(Path(tmp) / "site", name="bench", site_id=site.id)
            procs = await start(settings, site_dir, slots)
            try:
                await Shell.sync()
                await Add.sync()
                await ready(store, site_dir)
                pack: dict[str, Any] = {"node_packing_count": slots}

                def sample() -> Usage:
                    return usage(procs[0].pid, procs[1].pid) if cpu is not None else {}

                w1 = w2 = p50 = p95 = math.nan
                if "W1" in workloads:
                    before = sample()
                    t0 = time.perf_counter()
                    jobs = await Job.objects.bulk_create(
                        [Shell.submit(f"w1/{i}", save=False, **pack) for i in range(n)]
                    )
                    await Job.objects.wait(jobs, timeout=900)
                    w1 = time.perf_counter() - t0
                    assert all(j.state == "JOB_FINISHED" for j in jobs), "a W1 job failed"
                    if cpu is not None:
                        cpu.setdefault("W1", []).append(per_job(before, sample(), n))

                if "W2" in workloads:
                    before = sample()
                    t0 = time.perf_counter()
                    jobs = await Job.objects.bulk_create(
                        [Add.submit(f"w2/{i}", x=i, y=1, save=False, **pack) for i in range(n)]
                    )
                    total = 0
                    async for job in Job.objects.as_completed(jobs, timeout=900):
                        total += job.result_nowait()
                    w2 = time.perf_counter() - t0
                    check_sum(n, total)
                    if cpu is not None:
                        cpu.setdefault("W2", []).append(per_job(before, sample(), n))

                if "W3" in workloads:
                    times = []
                    for i in range(WARMUP + n_latency):
                        t0 = time.perf_counter()
                        job = await Add.submit(f"w3/{i}", x=1, y=1, **pack)
                        assert await job.result(timeout=60) == 2
                        times.append(time.perf_counter() - t0)
                    p50, p95 = p50_p95(times[WARMUP:])
            finally:
                await stop_processes(procs)
            channel = await amqp.channel()
            await delete_namespace(channel, topology, [site.id])
            await store.client.drop_database(settings.db)
    return Run(w1, w2, p50, p95)


async def main(
    n: int, n_latency: int, runs: int, slots: int, with_cpu: bool, workloads: Sequence[str]
) -> None:
    cpu: dict[str, list[Usage]] | None = {} if with_cpu else None
    with scratch_root(), mongo_url() as url:
        probe = file_creation_us()
        results = [await measure(url, n, n_latency, slots, cpu, workloads) for _ in range(runs)]
    print(f"one site agent, one launcher with {slots} slots; {runs} runs: min / median / max")
    print(f"a workdir and its job.out made in {probe:.0f} µs as the bench started")
    for name, what, times in (
        ("W1", f"{n:,} x `true`", [r.w1_s for r in results]),
        ("W2", f"{n:,} x add, results", [r.w2_s for r in results]),
    ):
        if name not in workloads:
            continue
        rates = spread([n / t for t in times])
        print(f"{name} {what:20s} makespan s {spread(times, '{:.2f}')}   jobs/s {rates}")
    for q in ("p50", "p95") if "W3" in workloads else ():
        ms = [1000 * getattr(r, f"w3_{q}_s") for r in results]
        print(f"W3 {n_latency} x add(1, 1){'':9s} {q} ms {spread(ms, '{:.1f}')}")
    for workload, samples in (cpu or {}).items():
        print(f"{workload} CPU, ms per job (user + system), medians of {runs} runs:")
        for name in samples[0]:
            user = statistics.median(s[name][0] for s in samples)
            system = statistics.median(s[name][1] for s in samples)
            print(f"  {name:12s} {user + system:5.2f} ({user:.2f} + {system:.2f})")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--latency", type=int, default=30)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--cpu", action="store_true", help="also each process's CPU per job")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.latency, a.runs, a.slots, a.cpu, a.workloads))
