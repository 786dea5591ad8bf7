"""The elastic queue: batch jobs sized to the runnable backlog, withdrawn when it empties."""

from __future__ import annotations

from pathlib import Path

import pytest
from scheduler_helpers import Fake
from support.driving import drive_jobs

from balsam_mq.domain import Actor, BatchJobState, Change, Job, JobState, Resources, Site
from balsam_mq.errors import ConfigError
from balsam_mq.settings import Settings
from balsam_mq.site.batch_jobs import BatchJobService, SchedulerSettings, build_service
from balsam_mq.site.elastic import ElasticQueue, ElasticQueueSettings
from balsam_mq.site.schedulers import SlurmScheduler
from balsam_mq.store import Store

B = BatchJobState
S = JobState


async def runnable(store: Store, site_id: int, n: int, **resources: int) -> list[int]:
    jobs = await store.jobs.create_many(
        [
            Job(app_id=1, site_id=site_id, workdir=f"w/{i}", resources=Resources(**resources))
            for i in range(n)
        ]
    )
    ids = [j.id for j in jobs if j.id is not None]
    await drive_jobs(store, ids, S.PREPROCESSED)
    return ids


async def test_backlog_counts_nodes_with_packing_and_filter_tags(
    store: Store, hpc_site: Site
) -> None:
    site = hpc_site
    assert site.id is not None
    await runnable(store, site.id, 8, node_packing_count=4)  # 2 nodes
    await runnable(store, site.id, 3, num_nodes=2)  # 6 nodes
    queue = ElasticQueue(store, site.id, ElasticQueueSettings(enabled=True))
    assert await queue.backlog_nodes() == pytest.approx(8.0)
    tagged = ElasticQueue(
        store, site.id, ElasticQueueSettings(enabled=True, filter_tags={"a": "b"})
    )
    assert await tagged.backlog_nodes() == 0


async def test_elastic_queue_submits_to_the_backlog_and_withdraws_when_it_empties(
    store: Store, hpc_site: Site, settings: Settings, fake_scheduler: Fake
) -> None:
    site, fake = hpc_site, fake_scheduler
    assert site.id is not None
    elastic = ElasticQueueSettings(
        enabled=True, project="proj", queue="debug", min_nodes=2, max_nodes=4, max_queued=1,
        max_wall_time_min=20, idle_timeout_s=30, job_mode="serial",
    )  # fmt: skip
    svc = BatchJobService(
        store, site, Path(site.path), settings, SlurmScheduler(),
        config=SchedulerSettings(kind="slurm"), elastic=elastic,
    )  # fmt: skip
    await svc.sync_once()
    assert await store.batch_jobs.for_site(site.id) == []  # no backlog, nothing submitted

    ids = await runnable(store, site.id, 6)  # 6 single-node jobs
    await svc.sync_once()
    (first,) = await store.batch_jobs.for_site(site.id)
    assert first.state is B.QUEUED and first.num_nodes == 4  # capped at max_nodes
    assert first.wall_time_min == 20 and first.job_mode == "serial"
    assert "--idle-timeout 30" in fake.state()["jobs"]["100"]["script"]
    await svc.sync_once()
    assert len(await store.batch_jobs.for_site(site.id)) == 1  # max_queued waiting already

    fake.set("100", state="RUNNING")  # it starts; the backlog is still unclaimed: one more
    await svc.sync_once()
    second = [b for b in await store.batch_jobs.for_site(site.id) if b.id != first.id]
    assert len(second) == 1 and second[0].num_nodes == 4
    assert second[0].state is B.QUEUED

    # the jobs ran elsewhere: backlog empty → the waiting batch job is withdrawn
    await store.jobs.transition([Change(i, S.PREPROCESSED, S.FAILED, by=Actor.USER) for i in ids])
    await svc.sync_once()
    states = {b.id: b.state for b in await store.batch_jobs.for_site(site.id)}
    assert states[first.id] is B.RUNNING  # running ones end on their idle timeout
    assert states[second[0].id] in (B.PENDING_DELETION, B.FINISHED)
    assert fake.calls("scancel") == [["101"]]


async def test_settings_sections_are_validated(
    store: Store, hpc_site: Site, settings: Settings
) -> None:
    site = hpc_site
    svc = build_service(
        store, site, Path(site.path), settings,
        {"scheduler": {"kind": "pbs"}, "elastic_queue": {"enabled": True, "max_nodes": 3}},
    )  # fmt: skip
    assert svc.scheduler.name == "pbs" and svc.elastic is not None
    with pytest.raises(ConfigError, match=r"scheduler\.kind"):
        build_service(store, site, Path(site.path), settings, {"scheduler": {"kind": "lsf"}})
    with pytest.raises(ConfigError, match="min_nodes 4 > max_nodes 2"):
        build_service(
            store, site, Path(site.path), settings,
            {"elastic_queue": {"min_nodes": 4, "max_nodes": 2}},
        )  # fmt: skip
