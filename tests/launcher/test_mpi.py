"""MPI for real: a run() app on 2 ranks, and multi-node serial mode over mpi4py workers."""

from __future__ import annotations

import socket

import pytest
from launcher_helpers import World, python_app_class
from support.waiting import wait_for_states

from balsam_mq.domain import JobState
from balsam_mq.domain.serialization import deserialize
from balsam_mq.launcher.main import build_allocation
from balsam_mq.launcher.nodes import Node, NodePool

S = JobState
pytestmark = pytest.mark.mpi

NUMPY_PLUS_MPI = """
import numpy as np

class NumpyPlusMPI:
    def run(self, *dims):
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        sizes = comm.gather(comm.Get_size(), root=0)
        if comm.Get_rank() == 0:
            return {"ranks": sizes, "array": np.ones(dims)}
"""

ADDER = """
class Adder:
    def run(self, x, y):
        return x + y
"""


@pytest.mark.parametrize("app_run", ["local", "mpich"])
async def test_run_app_on_two_ranks_returns_rank_zeros_value(world: World, app_run: str) -> None:
    app = await world.app("NumpyPlusMPI", cls=python_app_class(NUMPY_PLUS_MPI, "NumpyPlusMPI"))
    (job_id,) = await world.jobs(app, [{"dims": [2, 3]}], ranks_per_node=2)
    pool = NodePool([Node(0, socket.gethostname(), 2)])
    pilot = world.start_pilot(world.config(settings={"app_run": app_run}), pool=pool)
    await wait_for_states(world.store, [job_id], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    job = await world.store.jobs.get(job_id)
    assert job.state is S.RUN_DONE, job.state_data
    assert job.result is not None
    value = deserialize(job.result)
    assert value["ranks"] == [2, 2]
    assert value["array"].shape == (2, 3)


async def test_multi_node_serial_mode_distributes_jobs_to_mpi_workers(world: World) -> None:
    shell = await world.app("Where", command_template="sleep 0.3; echo $PPID")
    adder = await world.app("Adder", cls=python_app_class(ADDER, "Adder"))
    shell_ids = await world.jobs(shell, [{} for _ in range(4)])
    (add,) = await world.jobs(adder, [{"x": 4, "y": 6}])
    (wide,) = await world.jobs(shell, [{}], ranks_per_node=2)  # not a serial-mode job
    config = world.config(job_mode="serial", nodes=2, settings={"unfit_delay_s": 30})
    pool, executor = await build_allocation(config)
    assert len(pool) == 2
    pilot = world.start_pilot(config, pool=pool, executor=executor)
    await wait_for_states(world.store, [*shell_ids, add], [S.RUN_DONE])
    report = await world.finish(pilot)
    assert report.claimed == 5
    # each node ran jobs: the jobs' parents are the two worker ranks
    parents = {
        (world.data / j.workdir / "job.out").read_text().strip()
        for j in await world.store.jobs.get_many(shell_ids)
    }
    assert len(parents) == 2
    job = await world.store.jobs.get(add)
    assert job.result is not None and deserialize(job.result) == 10
    wide_job = await world.store.jobs.get(wide)
    assert wide_job.state is S.PREPROCESSED
    assert wide_job.unfit is not None and "serial mode" in wide_job.unfit["reason"]
