"""The scheduler service with fake sbatch/squeue/scancel and qsub/qstat/qdel on PATH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scheduler_helpers import Fake

from balsam_mq.domain import BatchJob, BatchJobState, Site
from balsam_mq.settings import Settings
from balsam_mq.site.batch_jobs import BatchJobService, SchedulerSettings
from balsam_mq.site.schedulers import PBSScheduler, SlurmScheduler
from balsam_mq.store import Store

B = BatchJobState


def service(
    store: Store, site: Site, settings: Settings, kind: str, **config: Any
) -> BatchJobService:
    scheduler = SlurmScheduler() if kind == "slurm" else PBSScheduler()
    return BatchJobService(
        store,
        site,
        Path(site.path),
        settings,
        scheduler,
        config=SchedulerSettings(kind=kind, **config),
    )


async def new_batch_job(store: Store, site: Site, **fields: Any) -> BatchJob:
    assert site.id is not None
    defaults: dict[str, Any] = {
        "num_nodes": 2,
        "wall_time_min": 30,
        "queue": "debug",
        "project": "proj",
    }
    return await store.batch_jobs.create(BatchJob(site_id=site.id, **{**defaults, **fields}))


async def test_slurm_batch_job_is_submitted_followed_and_deleted(
    store: Store, hpc_site: Site, settings: Settings, fake_scheduler: Fake
) -> None:
    site, fake = hpc_site, fake_scheduler
    svc = service(store, site, settings, "slurm", extra_args=["-C", "cpu"])
    bj = await new_batch_job(store, site, job_mode="serial", filter_tags={"run": "H2O"})
    assert bj.id is not None
    await svc.sync_once()
    queued = await store.batch_jobs.get(bj.id)
    assert queued.state is B.QUEUED and queued.scheduler_id == "100"
    (argv,) = fake.calls("sbatch")
    script = Path(site.path) / "qsubmit" / f"qlaunch{bj.id}.sh"
    assert argv == [
        "--parsable", "-N", "2", "-t", "30", "-A", "proj", "-q", "debug",
        "-o", str(script.with_suffix(".out")), "-C", "cpu", str(script),
    ]  # fmt: skip
    text = fake.state()["jobs"]["100"]["script"]
    assert "#SBATCH --job-name=balsam-" in text
    assert f"export BALSAM_DB={settings.db}" in text
    launcher_line = text.strip().splitlines()[-1]
    assert f"launcher --site {site.id} --wall-time 29 --job-mode serial" in launcher_line
    assert f"--batch-job-id {bj.id} --filter-tags run=H2O" in launcher_line
    assert "--nodes" not in launcher_line  # the allocation's nodes are discovered

    fake.set("100", state="RUNNING")
    await svc.sync_once()
    running = await store.batch_jobs.get(bj.id)
    assert running.state is B.RUNNING and running.start_time is not None

    await store.batch_jobs.set_state([bj.id], B.PENDING_DELETION)  # `queue rm`
    await svc.sync_once()
    assert fake.calls("scancel") == [["100"]]
    assert (await store.batch_jobs.get(bj.id)).state is B.PENDING_DELETION
    await svc.sync_once()  # the scheduler no longer lists it
    assert fake.calls("scancel") == [["100"]]  # asked once
    done = await store.batch_jobs.get(bj.id)
    assert done.state is B.FINISHED and done.end_time is not None
    assert done.status_info["scheduler_state"] == "gone"


async def test_pbs_batch_job_states_follow_qstat(
    store: Store, hpc_site: Site, settings: Settings, fake_scheduler: Fake
) -> None:
    site, fake = hpc_site, fake_scheduler
    svc = service(store, site, settings, "pbs")
    bj = await new_batch_job(store, site, wall_time_min=90)
    other = await new_batch_job(store, site)
    assert bj.id is not None and other.id is not None
    await svc.sync_once()
    assert [a[:6] for a in fake.calls("qsub")] == [
        ["-l", "select=2", "-l", "walltime=01:30:00", "-A", "proj"],
        ["-l", "select=2", "-l", "walltime=00:30:00", "-A", "proj"],
    ]
    first = await store.batch_jobs.get(bj.id)
    assert first.scheduler_id == "100.pbs01" and first.state is B.QUEUED
    assert "#PBS -N balsam-" in fake.state()["jobs"]["100.pbs01"]["script"]
    fake.set("100.pbs01", state="E")  # exiting still counts as running
    fake.set("101.pbs01", state="R")
    await svc.sync_once()
    assert (await store.batch_jobs.get(bj.id)).state is B.RUNNING
    fake.set("100.pbs01", state="F")
    fake.set("101.pbs01", purged=True)  # history gone: qstat fails for it
    await svc.sync_once()
    states = {b.id: b.state for b in await store.batch_jobs.for_site(site.id or 0)}
    assert states == {bj.id: B.FINISHED, other.id: B.FINISHED}


async def test_a_failed_submission_is_recorded_with_the_error(
    store: Store,
    hpc_site: Site,
    settings: Settings,
    fake_scheduler: Fake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = hpc_site
    monkeypatch.setenv("FAKE_SCHED_FAIL", "sbatch")
    svc = service(store, site, settings, "slurm")
    bj = await new_batch_job(store, site)
    assert bj.id is not None
    await svc.sync_once()
    failed = await store.batch_jobs.get(bj.id)
    assert failed.state is B.SUBMIT_FAILED
    assert "Invalid account" in failed.status_info["error"]
    assert failed.status_info["error"].startswith("sbatch --parsable")


async def test_the_sites_job_template_is_rendered_strictly(
    store: Store, hpc_site: Site, settings: Settings, fake_scheduler: Fake
) -> None:
    site, fake = hpc_site, fake_scheduler
    template = Path(site.path) / "job-template.sh"
    template.write_text(
        "#!/bin/bash\n#SBATCH -C {{ constraint }}\nmodule load conda\n{{ launcher_command }}\n"
    )
    svc = service(store, site, settings, "slurm")
    bj = await new_batch_job(store, site)
    assert bj.id is not None
    await svc.sync_once()
    failed = await store.batch_jobs.get(bj.id)
    assert failed.state is B.SUBMIT_FAILED
    assert failed.status_info["error"] == f"{template}: 'constraint' is undefined"
    template.write_text("#!/bin/bash\n#SBATCH -C knl\nmodule load conda\n{{ launcher_command }}\n")
    ok = await new_batch_job(store, site)
    await svc.sync_once()
    submitted = await store.batch_jobs.get(ok.id or 0)
    assert submitted.state is B.QUEUED
    text = fake.state()["jobs"][submitted.scheduler_id]["script"]
    assert text.startswith("#!/bin/bash\n#SBATCH -C knl\nmodule load conda\n")
    assert "-m balsam_mq.cli launcher --site" in text
