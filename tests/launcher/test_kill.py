"""Killing jobs: a running job's launcher ends its process group, a job that has not run never
starts, a deleted running job is killed first; the launcher drops the outcome of a run whose
job moved on and goes on with its other work."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from launcher_helpers import World, python_app_class
from support.waiting import process_gone, until, wait_for_states

from balsam_mq.domain import Actor, Change, Job as JobDocument, JobState
from balsam_mq.launcher.runs import LocalExecutor
from balsam_mq.launcher.warm_pool import WarmPool
from balsam_mq.sdk import Client, Job
from balsam_mq.settings import Settings

S = JobState
# bash (the group leader: its pid is the group's id) writes its pid, and that of a child
# sleeping in its group (one command: the launcher's script runs it in the background)
SLEEPER = "{ echo $$ > pid; sleep 60 & echo $! > child; wait; }"


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of process group ``pgid`` exists. Orphans may
    linger as zombies where nothing reaps them: they count as gone."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


async def pids(workdir: Path) -> tuple[int, int]:
    """The group leader and the child of a running SLEEPER job, once it wrote them."""

    def written() -> bool:
        return all((workdir / name).is_file() and (workdir / name).read_text().strip()
                   for name in ("pid", "child"))  # fmt: skip

    await until(written, timeout=30)
    return int((workdir / "pid").read_text()), int((workdir / "child").read_text())


async def workdir(world: World, job_id: int) -> Path:
    return world.data / (await world.store.jobs.get(job_id)).workdir


async def test_a_killed_running_job_loses_its_process_group_and_fails_naming_the_user(
    world: World, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="balsam_mq.launcher")  # per-job lines
    app = await world.app("Sleeper", command_template=SLEEPER)
    quick = await world.app("Quick", command_template="echo quick")
    (job_id,) = await world.jobs(app, [{}])
    pilot = world.start_pilot(world.config(), cores=1)
    await wait_for_states(world.store, [job_id], [S.RUNNING])
    leader, child = await pids(await workdir(world, job_id))
    assert group_alive(leader) and not process_gone(child)

    killed = await Job.objects.filter(id=job_id).kill()
    assert killed.moved == {job_id: (S.RUNNING, S.FAILED)} and killed.left == {}
    await until(lambda: process_gone(leader) and not group_alive(leader), timeout=10)

    job = await world.store.jobs.get(job_id)
    assert job.state is S.FAILED and job.state_data == {"reason": "killed by the user"}
    last = (await world.store.events.for_job(job_id))[-1]
    assert (last.from_state, last.to_state, last.by) == ("RUNNING", "FAILED", Actor.USER)
    # the slot is free again: the next job runs on the launcher's single core
    (next_job,) = await world.jobs(quick, [{}])
    await wait_for_states(world.store, [next_job], [S.RUN_DONE])
    report = await world.finish(pilot)
    assert report.killed == 1 and report.done == 1 and report.errors == 0
    assert (await world.store.jobs.get(job_id)).state is S.FAILED  # no outcome landed on it
    assert "outcome not applied" not in caplog.text
    assert f"Job {job_id} left RUNNING (killed by the user)" in caplog.text


async def test_jobs_killed_before_they_run_never_start(world: World, client: Client) -> None:
    app = await world.app("Sleeper", command_template=SLEEPER)
    quick = await world.app("Quick", command_template="echo quick")
    parent, runnable, restart = await world.jobs(app, [{}, {}, {}], node_packing_count=2)
    # RUNNING -> RUN_TIMEOUT -> RESTART_READY, as a reaped run goes
    steps = [
        (S.PREPROCESSED, S.RUNNING, Actor.LAUNCHER),
        (S.RUNNING, S.RUN_TIMEOUT, Actor.LAUNCHER),
        (S.RUN_TIMEOUT, S.RESTART_READY, Actor.TIMEOUT),
    ]
    for src, dst, by in steps:
        moved = await world.store.jobs.transition([Change(restart, src, dst, by=by)])
        assert moved.all_moved
    (waiting,) = [
        j.id
        for j in await world.store.jobs.create_many(
            [JobDocument(app_id=app.id, site_id=world.site_id, workdir="w", parent_ids=[parent])]
        )
    ]
    assert waiting is not None
    assert (await world.store.jobs.get(waiting)).state is S.AWAITING_PARENTS

    killed = await Job.objects.filter(id=[runnable, restart, waiting]).kill()
    assert killed.moved == {
        runnable: (S.PREPROCESSED, S.FAILED),
        restart: (S.RESTART_READY, S.FAILED),
        waiting: (S.AWAITING_PARENTS, S.FAILED),
    }
    pilot = world.start_pilot(world.config(), cores=2)
    (marker,) = await world.jobs(quick, [{}], node_packing_count=2)  # queued behind them
    await wait_for_states(world.store, [marker], [S.RUN_DONE])
    await wait_for_states(world.store, [parent], [S.RUNNING])
    for job_id in (runnable, restart, waiting):
        job = await world.store.jobs.get(job_id)
        assert job.state is S.FAILED and job.state_data["reason"] == "killed by the user"
        history = [e.to_state for e in await world.store.events.for_job(job_id)]
        assert history[-1] == "FAILED" and history.count("RUNNING") == (job_id == restart)
        assert not (await workdir(world, job_id) / "pid").exists()
    await Job.objects.filter(id=parent).kill()
    report = await world.finish(pilot)
    assert report.claimed == 2 and report.killed == 1  # the parent and the marker


async def test_a_job_claimed_ahead_and_killed_is_not_started(world: World, client: Client) -> None:
    quick = await world.app("Quick", command_template="sleep 0.05")
    slow = await world.app("Slow", command_template=SLEEPER)
    settings = {"claim_ahead_s": 2.0, "claim_ahead_max": 3}
    pilot = world.start_pilot(world.config(settings=settings), cores=1)
    await asyncio.wait_for(pilot.ready.wait(), 30)
    fast = await world.jobs(quick, [{} for _ in range(8)])
    long = await world.jobs(slow, [{} for _ in range(3)])
    await wait_for_states(world.store, fast, [S.RUN_DONE], timeout=60)
    # the quick jobs' pace had slow ones claimed ahead, behind the one that runs
    await until(lambda: len(pilot.running_jobs) == 1 and len(pilot.held()) > 1, timeout=30)
    (running,) = pilot.running_jobs
    ahead = sorted(set(pilot.held()) - {running})
    await Job.objects.filter(id=ahead).kill()
    await until(lambda: set(pilot.held()) == {running}, timeout=10)
    leader, _ = await pids(await workdir(world, running))
    await Job.objects.filter(id=running).kill()  # room frees: nothing killed takes it
    await until(lambda: not group_alive(leader), timeout=10)
    rest = [j for j in long if j not in (running, *ahead)]
    if rest:
        await wait_for_states(world.store, rest, [S.RUNNING])
    for job_id in ahead:
        assert not (await workdir(world, job_id) / "job.out").exists()
        assert (await world.store.jobs.get(job_id)).state is S.FAILED
    await Job.objects.filter(id=long).kill()
    report = await world.finish(pilot)
    assert report.killed == len(long) and report.errors == 0


async def test_deleting_a_running_job_kills_it_first(
    world: World, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    app = await world.app("Sleeper", command_template=SLEEPER)
    job_ids = await world.jobs(app, [{}, {}], node_packing_count=2)
    pilot = world.start_pilot(world.config(), cores=2)
    await wait_for_states(world.store, job_ids, [S.RUNNING])
    groups = [(await pids(await workdir(world, j)))[0] for j in job_ids]

    assert await Job.objects.filter(id=job_ids[0]).delete() == 1
    job = await Job.objects.get(id=job_ids[1])
    await job.delete()  # one job alone, the same way
    await until(lambda: not any(group_alive(g) for g in groups), timeout=10)
    assert await world.store.jobs.get_many(job_ids) == []
    for job_id in job_ids:
        last = (await world.store.events.for_job(job_id))[-1]
        assert (last.from_state, last.to_state) == ("RUNNING", "FAILED")
        assert last.state_data == {"reason": "killed by the user: the job was deleted"}
    report = await world.finish(pilot)
    assert report.killed == 2 and report.errors == 0
    assert "outcome not applied" not in caplog.text


WHO = """
import time

class Who:
    def run(self, sleep=0):
        time.sleep(sleep)
        return "woke"
"""


async def test_a_killed_job_in_a_warm_worker_ends_and_the_pool_goes_on(
    world: World, client: Client
) -> None:
    warm = WarmPool()
    await warm.start()
    try:
        app = await world.app("Who", cls=python_app_class(WHO, "Who"))
        (job_id,) = await world.jobs(app, [{"sleep": 60}])
        pilot = world.start_pilot(world.config(), cores=1, executor=LocalExecutor(warm))
        await wait_for_states(world.store, [job_id], [S.RUNNING])
        await until(lambda: pilot.running_jobs == [job_id])
        await Job.objects.filter(id=job_id).kill()
        await until(lambda: not pilot.running_jobs, timeout=10)
        (after,) = await world.jobs(app, [{"sleep": 0}])
        await wait_for_states(world.store, [after], [S.RUN_DONE])
        report = await world.finish(pilot)
    finally:
        await warm.close()
    assert report.killed == 1 and report.done == 1
    assert (await world.store.jobs.get(job_id)).state is S.FAILED


async def test_a_launcher_process_kills_the_run_of_a_job_killed_with_the_cli(
    world: World, settings: Settings
) -> None:
    app = await world.app("Sleeper", command_template=SLEEPER)
    (job_id,) = await world.jobs(app, [{}])
    env = {
        **os.environ,
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "balsam_mq.cli", "launcher",
        "--site", "testsite", "--wall-time", "5", "--cores-per-node", "1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for_states(world.store, [job_id], [S.RUNNING], timeout=60)
        leader, _ = await pids(await workdir(world, job_id))
        kill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "balsam_mq.cli", "job", "kill", str(job_id), "--yes",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(kill.communicate(), 60)
        assert kill.returncode == 0, err.decode()
        assert out.decode() == f"killed 1 running job: {job_id}\n"
        await until(lambda: not group_alive(leader), timeout=10)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["killed"] == 1 and report["timed_out"] == 0
    assert (await world.store.jobs.get(job_id)).state is S.FAILED
