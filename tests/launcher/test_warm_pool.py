"""Single-rank Python jobs in warm worker processes: results, errors, isolation, kills."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import pytest
from launcher_helpers import World, python_app_class
from support.waiting import until, wait_for_states

from balsam_mq.domain import JobState
from balsam_mq.domain.serialization import deserialize
from balsam_mq.launcher.nodes import Node, NodePool
from balsam_mq.launcher.runs import LocalExecutor
from balsam_mq.launcher.warm_pool import WarmPool

S = JobState

WHO = """
import os

class Who:
    def run(self, fail=False, sleep=0):
        import time
        time.sleep(sleep)
        if fail:
            raise KeyError("missing")
        print("in", os.getcwd(), os.environ["BALSAM_JOB_ID"])
        return os.getppid()
"""


def this_host(cores: int = 4) -> NodePool:
    """One node: this machine, by its own name (where warm workers run)."""
    return NodePool([Node(0, socket.gethostname(), cores)])


@pytest.fixture
async def warm() -> AsyncIterator[WarmPool]:
    pool = WarmPool()
    await pool.start()
    yield pool
    await pool.close()


async def test_python_jobs_run_in_warm_workers(world: World, warm: WarmPool) -> None:
    app = await world.app("Who", cls=python_app_class(WHO, "Who"))
    ok, bad = await world.jobs(app, [{}, {"fail": True}], node_packing_count=2)
    (wide,) = await world.jobs(app, [{}], ranks_per_node=2)  # two ranks: the ordinary path
    pilot = world.start_pilot(world.config(), pool=this_host(), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [ok, bad, wide], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    done, failed, ranks2 = await world.store.jobs.get_many([ok, bad, wide])
    assert done.state is S.RUN_DONE and done.result is not None
    assert deserialize(done.result) == warm.server_pid  # a worker forked by the warm server
    workdir = world.data / done.workdir
    assert (workdir / "job.out").read_text() == f"in {workdir} {ok}\n"
    assert failed.state is S.RUN_ERROR and failed.return_code == 1
    assert failed.traceback is not None and "KeyError: 'missing'" in failed.traceback
    assert ranks2.state is S.RUN_DONE and ranks2.result is not None
    assert deserialize(ranks2.result) != warm.server_pid


async def test_a_warm_job_is_killed_at_stop(world: World, warm: WarmPool) -> None:
    app = await world.app("Who", cls=python_app_class(WHO, "Who"))
    (job_id,) = await world.jobs(app, [{"sleep": 60}])
    pilot = world.start_pilot(world.config(), pool=this_host(), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [job_id], [S.RUNNING])
    pilot.request_stop("test stop")
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert report.timed_out == 1
    job = await world.store.jobs.get(job_id)
    assert job.state is S.RUN_TIMEOUT and job.return_code == -15


async def test_a_warm_job_whose_workdir_cannot_be_made_fails_naming_why(
    world: World, warm: WarmPool
) -> None:
    # the worker makes a warm job's workdir: here its parent is a file
    source = WHO.replace("Who", "Blocked")
    blocked = await world.app("Blocked", cls=python_app_class(source, "Blocked"))
    who = await world.app("Who", cls=python_app_class(WHO, "Who"))
    (world.data / "Blocked").write_text("not a directory")
    (stuck,) = await world.jobs(blocked, [{}])
    (fine,) = await world.jobs(who, [{}])
    pilot = world.start_pilot(world.config(), pool=this_host(cores=1), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [stuck, fine], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    failed, done = await world.store.jobs.get_many([stuck, fine])
    assert failed.state is S.RUN_ERROR and failed.return_code == 1
    assert failed.traceback is not None and "NotADirectoryError" in failed.traceback
    assert str(world.data / failed.workdir) in failed.traceback  # the workdir it could not make
    assert done.state is S.RUN_DONE  # the worker goes on with the next job


LEAKY = """
import os, sys

class Leaky:
    def run(self, mark, exit_code=None, hard=False):
        seen = {"env": os.environ.get("LEAK"), "cwd": os.getcwd(), "path0": sys.path[0]}
        os.environ["LEAK"] = mark      # left behind on purpose
        os.chdir("/")
        sys.path.insert(0, "/leak")
        print("job", mark)
        if hard:
            os._exit(7)
        if exit_code is not None:
            sys.exit(exit_code)
        return seen
"""


async def test_each_job_in_a_worker_starts_clean(world: World, warm: WarmPool) -> None:
    app = await world.app("Leaky", cls=python_app_class(LEAKY, "Leaky"))
    ids = await world.jobs(app, [{"mark": str(i)} for i in range(6)])  # one slot: one worker
    pilot = world.start_pilot(world.config(), pool=this_host(cores=1), executor=LocalExecutor(warm))
    await wait_for_states(world.store, ids, [S.RUN_DONE])
    await world.finish(pilot)
    for job in await world.store.jobs.get_many(ids):
        workdir = world.data / job.workdir
        seen = deserialize(job.result or "")
        assert seen == {"env": None, "cwd": str(workdir), "path0": str(workdir)}
        assert (workdir / "job.out").read_text() == f"job {(job.id or 0) - ids[0]}\n"


async def test_exits_in_a_worker_are_exit_codes_and_the_pool_goes_on(
    world: World, warm: WarmPool
) -> None:
    app = await world.app("Leaky", cls=python_app_class(LEAKY, "Leaky"))
    soft, hard, after = await world.jobs(
        app, [{"mark": "a", "exit_code": 3}, {"mark": "b", "hard": True}, {"mark": "c"}]
    )
    pilot = world.start_pilot(world.config(), pool=this_host(cores=1), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [soft, hard, after], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    a, b, c = await world.store.jobs.get_many([soft, hard, after])
    assert (a.state, a.return_code) == (S.RUN_ERROR, 3)  # sys.exit(3)
    assert (b.state, b.return_code) == (S.RUN_ERROR, 7)  # os._exit(7) ended its worker
    assert c.state is S.RUN_DONE  # a new worker took the next job


async def test_a_resynced_app_runs_its_new_version(world: World, warm: WarmPool) -> None:
    version = "class V:\n    def run(self):\n        return {n}\n"
    app = await world.app("V", cls=python_app_class(version.format(n=1), "V"))
    pilot = world.start_pilot(world.config(), pool=this_host(cores=1), executor=LocalExecutor(warm))
    (first,) = await world.jobs(app, [{}])
    await wait_for_states(world.store, [first], [S.RUN_DONE])
    app = await world.app("V", cls=python_app_class(version.format(n=2), "V"))
    (second,) = await world.jobs(app, [{}])
    await wait_for_states(world.store, [second], [S.RUN_DONE])
    await world.finish(pilot)
    jobs = await world.store.jobs.get_many([first, second])
    assert [deserialize(j.result or "") for j in jobs] == [1, 2]


RANK = """
import os

class Rank:
    def run(self):
        return os.environ.get("PMI_RANK")  # set by mpiexec, absent in a warm worker
"""


@pytest.mark.mpi
async def test_only_jobs_placed_on_the_launchers_host_use_the_warm_pool(
    world: World, warm: WarmPool
) -> None:
    """Two nodes that are both this machine, by two names: the job placed on the second
    one is started through mpiexec on it, not forked here."""
    app = await world.app("Rank", cls=python_app_class(RANK, "Rank"))
    here, there = await world.jobs(app, [{}, {}])  # a whole node each
    pool = NodePool([Node(0, socket.gethostname(), 1), Node(1, "localhost", 1)])
    config = world.config(settings={"app_run": "mpich"})
    pilot = world.start_pilot(config, pool=pool, executor=LocalExecutor(warm))
    await wait_for_states(world.store, [here, there], [S.RUN_DONE, S.RUN_ERROR], 60)
    await world.finish(pilot)
    jobs = await world.store.jobs.get_many([here, there])
    assert all(j.state is S.RUN_DONE for j in jobs), [j.state_data for j in jobs]
    assert sorted(str(deserialize(j.result)) for j in jobs if j.result) == ["0", "None"]


PID = """
import os

class Pid:
    def run(self):
        return os.getpid()
"""


async def test_a_worker_retires_after_its_share_of_jobs_and_the_next_runs_in_a_new_one(
    world: World,
) -> None:
    app = await world.app("Pid", cls=python_app_class(PID, "Pid"))
    ids = await world.jobs(app, [{} for _ in range(5)])
    pool = WarmPool(worker_jobs=2)
    await pool.start()
    try:  # one slot: the jobs run one after another
        pilot = world.start_pilot(world.config(), pool=this_host(1), executor=LocalExecutor(pool))
        await wait_for_states(world.store, ids, [S.RUN_DONE, S.RUN_ERROR])
        await world.finish(pilot)
    finally:
        await pool.close()
    jobs = sorted(await world.store.jobs.get_many(ids), key=lambda j: j.last_update)
    assert all(j.state is S.RUN_DONE and j.result is not None for j in jobs)
    pids = [deserialize(j.result) for j in jobs]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]  # two jobs each, then anew
    assert len(set(pids)) == 3


async def test_a_worker_lost_while_idle_is_replaced_and_no_job_is_lost(
    world: World, warm: WarmPool
) -> None:
    app = await world.app("Pid", cls=python_app_class(PID, "Pid"))
    pilot = world.start_pilot(world.config(), pool=this_host(1), executor=LocalExecutor(warm))
    (first,) = await world.jobs(app, [{}])
    await wait_for_states(world.store, [first], [S.RUN_DONE])
    lost = deserialize((await world.store.jobs.get(first)).result or "")
    os.kill(lost, signal.SIGKILL)  # its worker, idle between jobs
    await until(lambda: not os.path.exists(f"/proc/{lost}"), timeout=30)
    after = await world.jobs(app, [{}, {}])
    await wait_for_states(world.store, after, [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    jobs = await world.store.jobs.get_many(after)
    assert all(j.state is S.RUN_DONE and j.result is not None for j in jobs)
    assert lost not in {deserialize(j.result or "") for j in jobs}  # in a new worker
