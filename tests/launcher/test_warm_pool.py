"""Single-rank Python jobs forked from a warm interpreter: results, errors, kills, fallbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from launcher_helpers import World, python_app_class
from support.waiting import wait_for_states

from balsam_mq.domain import JobState
from balsam_mq.domain.serialization import deserialize
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


@pytest.fixture
async def warm() -> AsyncIterator[WarmPool]:
    pool = WarmPool()
    await pool.start()
    yield pool
    await pool.close()


async def test_python_jobs_fork_from_the_warm_interpreter(world: World, warm: WarmPool) -> None:
    app = await world.app("Who", cls=python_app_class(WHO, "Who"))
    ok, bad = await world.jobs(app, [{}, {"fail": True}], node_packing_count=2)
    (wide,) = await world.jobs(app, [{}], ranks_per_node=2)  # two ranks: the ordinary path
    pilot = world.start_pilot(world.config(), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [ok, bad, wide], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    done, failed, ranks2 = await world.store.jobs.get_many([ok, bad, wide])
    assert done.state is S.RUN_DONE and done.result is not None
    assert deserialize(done.result) == warm.server_pid  # forked by the warm server
    workdir = world.data / done.workdir
    assert (workdir / "job.out").read_text() == f"in {workdir} {ok}\n"
    assert failed.state is S.RUN_ERROR and failed.return_code == 1
    assert failed.traceback is not None and "KeyError: 'missing'" in failed.traceback
    assert ranks2.state is S.RUN_DONE and ranks2.result is not None
    assert deserialize(ranks2.result) != warm.server_pid


async def test_a_warm_job_is_killed_at_stop(world: World, warm: WarmPool) -> None:
    app = await world.app("Who", cls=python_app_class(WHO, "Who"))
    (job_id,) = await world.jobs(app, [{"sleep": 60}])
    pilot = world.start_pilot(world.config(), executor=LocalExecutor(warm))
    await wait_for_states(world.store, [job_id], [S.RUNNING])
    pilot.request_stop("test stop")
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert report.timed_out == 1
    job = await world.store.jobs.get(job_id)
    assert job.state is S.RUN_TIMEOUT and job.return_code == -15
