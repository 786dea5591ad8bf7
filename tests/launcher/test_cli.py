"""`balsam-mq launcher` as a process: runs jobs, and SIGTERM moves running ones to RUN_TIMEOUT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from launcher_helpers import World
from support.waiting import until, wait_for_states

from balsam_mq.domain import JobState
from balsam_mq.settings import Settings

S = JobState


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }


async def test_sigterm_stops_the_launcher_and_times_out_its_jobs(
    world: World, settings: Settings
) -> None:
    app = await world.app("Long", command_template="echo up; sleep 60")
    quick = await world.app("Quick", command_template="echo quick")
    (long_job,) = await world.jobs(app, [{}], node_packing_count=2)
    (quick_job,) = await world.jobs(quick, [{}], node_packing_count=2)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "balsam_mq.cli", "launcher",
        "--site", "testsite", "--wall-time", "5", "--cores-per-node", "2",
        env=_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for_states(world.store, [quick_job], [S.RUN_DONE], timeout=20)
        await wait_for_states(world.store, [long_job], [S.RUNNING], timeout=60)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["timed_out"] == 1 and report["done"] == 1
    assert report["stop_reason"] == "launcher received SIGTERM"
    job = await world.store.jobs.get(long_job)
    assert job.state is S.RUN_TIMEOUT
    assert job.state_data["reason"] == "launcher received SIGTERM"


async def test_unknown_site_is_a_clear_error(world: World, settings: Settings) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "balsam_mq.cli", "launcher", "--site", "nowhere", "-t", "1",
        env=_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().strip() == "error: site 'nowhere' does not exist"  # as the SDK says


def _processes_in(workdirs: list[Path]) -> set[int]:
    """Processes whose working directory is one of ``workdirs``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) in workdirs:
                    found.add(int(entry.name))
    return found


async def test_a_killed_launcher_takes_the_processes_of_its_jobs_along(
    world: World, settings: Settings
) -> None:
    direct = await world.app("Direct", command_template="sleep 300")
    shell = await world.app("Shell", command_template="sleep 300 && echo never")
    ids = [(await world.jobs(app, [{}], node_packing_count=2))[0] for app in (direct, shell)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "balsam_mq.cli", "launcher",
        "--site", "testsite", "--wall-time", "5", "--cores-per-node", "2",
        env=_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    workdirs = [world.data.resolve() / j.workdir for j in await world.store.jobs.get_many(ids)]
    try:
        await wait_for_states(world.store, ids, [S.RUNNING], timeout=60)

        async def both_running() -> bool:
            return len(_processes_in(workdirs)) >= 2  # sleep; bash and its sleep

        await until(both_running, timeout=30)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to clean up after itself
        await process.wait()

    async def all_gone() -> bool:
        return not _processes_in(workdirs)

    await until(all_gone, timeout=15)
