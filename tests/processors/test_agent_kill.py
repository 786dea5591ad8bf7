"""The agent killed with SIGKILL at random moments loses no job and records no transition twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agent_helpers import (
    Lingering,
    S,
    SiteEnv,
    StandInLauncher,
    all_in,
    hook_pid,
)
from support.invariants import assert_invariants
from support.waiting import process_gone, until, wait_for_states

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.settings import Settings
from balsam_mq.store import Store

HERE = Path(__file__).resolve().parent


class Counted(ApplicationDefinition):
    site = "polaris"
    command_template = "true"

    def postprocess(self) -> None:
        time.sleep(0.02)  # 300 jobs take longer than the agent lives before the third kill
        with open("postprocess.count", "a") as f:
            f.write("x")
        self.job.data = {**self.job.data, "post": True}
        self.job.state = "POSTPROCESSED"


async def _start_agent(settings: Settings, site: SiteEnv) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
        # the agent imports this module (apps by reference) and what it imports
        "PYTHONPATH": os.pathsep.join(
            [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "balsam_mq.cli",
        "site",
        "agent",
        str(site.dir.path),
        env=env,
        start_new_session=True,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _wait_running(log: Path, starts_before: int) -> None:
    """Until the agent started after ``starts_before`` earlier ones logs that it runs."""

    async def running() -> bool:
        return log.exists() and log.read_text().count(") running") > starts_before

    await until(running, 60)


async def test_agent_killed_at_random_moments_finishes_every_job_once(
    client: Any, store: Store, site: SiteEnv, launcher: StandInLauncher, settings: Settings
) -> None:
    jobs = await Job.objects.bulk_create([Counted.submit(f"k/{i}", save=False) for i in range(300)])
    ids = [j.id for j in jobs]
    rng = random.Random(1234)
    log = site.dir.logs / "agent.log"
    kills = 0
    while kills < 4 and not await all_in(store, ids, S.JOB_FINISHED):
        agent = await _start_agent(settings, site)
        await _wait_running(log, kills)
        await asyncio.sleep(rng.uniform(0.1, 1.0))  # a random moment while jobs flow
        os.killpg(agent.pid, signal.SIGKILL)
        await agent.wait()
        kills += 1
    assert kills >= 3
    agent = await _start_agent(settings, site)
    try:
        await _wait_running(log, kills)
        await wait_for_states(store, ids, [S.JOB_FINISHED], 180)
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 30)
    assert agent.returncode == 0  # SIGTERM is a clean shutdown
    report = await assert_invariants(store, ids)  # a legal chain each, nothing repeated
    assert report.final == {"JOB_FINISHED": len(ids)}
    for job in await store.jobs.get_many(ids):
        assert job.data == {"post": True}


async def test_a_killed_agent_leaves_no_hook_worker_behind(
    client: Any, store: Store, site: SiteEnv, settings: Settings
) -> None:
    job = await Lingering.submit("linger/1")
    agent = await _start_agent(settings, site)
    try:
        worker = await hook_pid(site.dir.workdir("linger/1") / "hook.pid")
        os.kill(agent.pid, signal.SIGKILL)  # the agent alone, not its process group
        await agent.wait()
        await until(lambda: process_gone(worker), 15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.pid, signal.SIGKILL)
    assert (await store.jobs.get(job.id)).state == S.STAGED_IN  # for the next agent
