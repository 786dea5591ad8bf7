"""The local scheduler for real: the batch job script starts a launcher that runs the jobs."""

from __future__ import annotations

from pathlib import Path

from launcher_helpers import World
from support.waiting import wait_for_states

from balsam_mq.domain import BatchJob, BatchJobState, JobState
from balsam_mq.settings import Settings
from balsam_mq.site.batch_jobs import BatchJobService
from balsam_mq.site.schedulers import LocalScheduler
from balsam_mq.store.sessions import SessionRepository

B = BatchJobState
S = JobState


async def test_local_batch_job_runs_a_launcher_until_deleted(
    world: World, settings: Settings
) -> None:
    assert world.site is not None
    app = await world.app("Hello", command_template="echo hello from $BALSAM_JOB_ID")
    ids = await world.jobs(app, [{}, {}], node_packing_count=2)
    scheduler = LocalScheduler()
    svc = BatchJobService(world.store, world.site, Path(world.site.path), settings, scheduler)
    bj = await world.store.batch_jobs.create(
        BatchJob(site_id=world.site_id, num_nodes=2, wall_time_min=2, job_mode="serial")
    )
    assert bj.id is not None
    await svc.sync_once()
    submitted = await world.store.batch_jobs.get(bj.id)
    assert submitted.state is B.QUEUED and submitted.scheduler_id is not None
    script = Path(submitted.status_info["script"])
    assert script.name == f"qlaunch{bj.id}.sh"
    await svc.sync_once()
    assert (await world.store.batch_jobs.get(bj.id)).state is B.RUNNING

    await wait_for_states(world.store, ids, [S.RUN_DONE], timeout=60)
    for job in await world.store.jobs.get_many(ids):
        assert job.batch_job_id == bj.id
        assert (world.data / job.workdir / "job.out").read_text() == f"hello from {job.id}\n"

    await world.store.batch_jobs.set_state([bj.id], B.PENDING_DELETION)  # `queue rm`
    await svc.sync_once()  # SIGTERM to the batch job's process group
    assert await scheduler.wait(submitted.scheduler_id) == 0  # the launcher exited cleanly
    await svc.sync_once()
    assert (await world.store.batch_jobs.get(bj.id)).state is B.FINISHED
    sessions = await SessionRepository(world.store.db).for_site(world.site_id)
    assert [(s["batch_job_id"], s["state"]) for s in sessions] == [(bj.id, "STOPPED")]
    assert sessions[0]["stop_reason"] == "launcher received SIGTERM"
    assert len(sessions[0]["nodes"]) == 2  # --nodes 2: serial mode with two MPI workers
