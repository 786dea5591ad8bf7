"""The Job object: save writes only what changed (in-place changes included), state changes are
user transitions checked by the table, refresh and delete, parents, bulk creation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import JobState
from balsam_mq.errors import InvalidTransition, JobError, NotFound
from balsam_mq.sdk import Client, Site
from balsam_mq.store import Store
from balsam_mq.store.creation import CREATE_CHUNK

S = JobState
Drive = Any


def sim() -> type[ApplicationDefinition]:
    class Sim(ApplicationDefinition):
        site = "polaris"
        command_template = "sim {{ n }}"

    return Sim


async def test_save_writes_only_changed_fields(client: Client, site: Site, store: Store) -> None:
    job = await sim().submit("w/1", n=1, tags={"a": "1"}, data={"nested": {"k": [1]}})
    # someone else changes a field this job object did not touch
    await store.db["jobs"].update_one({"_id": job.id}, {"$set": {"workdir": "w/elsewhere"}})
    job.tags["b"] = "2"  # in place
    job.data["nested"]["k"].append(2)  # deep in place
    job.num_nodes = 3
    job.parameters["n"] = 7
    assert job._changes() == {
        "tags": {"a": "1", "b": "2"},
        "data": {"nested": {"k": [1, 2]}},
        "num_nodes": 3,
        "parameters": {"n": 7},
    }
    await job.save()
    stored = await store.jobs.get(job.id)  # type: ignore[arg-type]
    assert stored.workdir == "w/elsewhere"  # not overwritten
    assert stored.tags == {"a": "1", "b": "2"} and stored.data == {"nested": {"k": [1, 2]}}
    assert stored.resources.num_nodes == 3
    assert job.workdir == "w/elsewhere"  # save reloads the job
    assert job._changes() == {}
    assert (await Job.objects.get(id=job.id)).parameters == {"n": 7}


async def test_a_state_change_is_a_user_transition(
    client: Client, site: Site, store: Store, drive: Drive
) -> None:
    job = await sim().submit("w/1", n=1)
    await drive([job.id], S.FAILED)
    await job.refresh()
    assert job.state == S.FAILED
    job.state = "RESTART_READY"
    job.state_data = {"why": "fixed the input"}
    await job.save()
    history = await store.events.for_job(job.id)  # type: ignore[arg-type]
    assert (history[-1].from_state, history[-1].to_state, history[-1].by) == (
        "FAILED",
        "RESTART_READY",
        "user",
    )
    assert history[-1].state_data == {"why": "fixed the input"}
    job.state = "RUNNING"  # only a launcher may claim a job
    with pytest.raises(InvalidTransition, match="RESTART_READY -> RUNNING by user"):
        await job.save()


async def test_a_stale_state_is_refused(
    client: Client, site: Site, store: Store, drive: Drive
) -> None:
    job = await sim().submit("w/1", n=1)
    await drive([job.id], S.RUNNING)  # moved on since the job object was loaded
    job.state = "FAILED"
    with pytest.raises(JobError, match=r"its state changed to RUNNING since it was loaded"):
        await job.save()


async def test_refresh_delete_and_repr(either: tuple[Client, Site, Drive]) -> None:
    job = await sim().submit("w/1", n=1)
    copy = await Job.objects.get(id=job.id)
    copy.data = {"x": 1}
    await copy.save()
    await job.refresh()
    assert job.data == {"x": 1}
    assert repr(job) == f"Job(id={job.id}, app={job.app_id}, workdir='w/1', state=PREPROCESSED)"
    await job.delete()
    assert job.id is None
    with pytest.raises(NotFound):
        await copy.refresh()
    with pytest.raises(JobError, match="is not saved"):
        await job.delete()


async def test_parents_and_workdir(either: tuple[Client, Site, Drive]) -> None:
    _, _, drive = either
    Sim = sim()
    parents = await Job.objects.bulk_create(
        [Sim.submit(f"p/{i}", n=i, save=False) for i in range(2)]
    )
    await drive([parents[0].id], S.JOB_FINISHED)
    child = await Job.objects.create(
        workdir="child", app_id=Sim, parameters={"n": 9}, parent_ids=[p.id for p in parents]
    )
    assert child.state == S.AWAITING_PARENTS
    assert [p.id for p in await child.parent_query().order_by("id")] == [p.id for p in parents]
    assert child.resolve_workdir("/sites/polaris/data") == Path("/sites/polaris/data/child")
    done = await Job.objects.create(
        workdir="child2", app_id=Sim, parameters={"n": 1}, parent_ids=[parents[0].id]
    )
    assert done.state == S.PREPROCESSED  # its parent finished: runnable at once


async def test_bulk_create_of_1000_jobs_in_one_call(
    client: Client, site: Site, store: Store
) -> None:
    Sim = sim()
    jobs = [Sim.submit(f"bulk/{i}", n=i, save=False) for i in range(1000)]
    created = await Job.objects.bulk_create(jobs)
    assert created is not None and len(created) == 1000
    job_ids = [j.id for j in jobs]
    first = job_ids[0]
    assert job_ids == list(range(first, first + 1000))  # one block of ids
    assert {j.state for j in jobs} == {S.PREPROCESSED}
    assert await store.db["jobs"].count_documents({}) == 1000
    assert await store.events.count(from_state="CREATED") == 1000
    with pytest.raises(JobError, match="already saved"):
        await Job.objects.bulk_create(jobs[:1])


async def test_bulk_create_over_several_transactions(
    client: Client, site: Site, store: Store
) -> None:
    Sim = sim()
    n = CREATE_CHUNK * 2 + 7  # written a chunk per transaction, chunks in flight together
    jobs = [Sim.submit(f"many/{i}", n=i, save=False, launch_params={"a": "1"}) for i in range(n)]
    await Job.objects.bulk_create(jobs)
    first = jobs[0].id
    assert first is not None and [j.id for j in jobs] == list(range(first, first + n))
    assert {j.state for j in jobs} == {S.PREPROCESSED}
    assert all(j.created_at is not None and j.workdir == f"many/{i}" for i, j in enumerate(jobs))
    assert await store.db["jobs"].count_documents({}) == n
    assert await store.events.count(kind="job") == 3 * n
    # jobs created together share nothing mutable
    jobs[0].launch_params["b"] = "2"
    jobs[0].state_data["note"] = "x"
    assert jobs[1].launch_params == {"a": "1"} and jobs[1].state_data == {}
    changed = {"launch_params": {"a": "1", "b": "2"}, "state_data": {"note": "x"}}
    assert jobs[0]._changes() == changed
    assert jobs[1]._changes() == {}


async def test_a_bad_job_anywhere_in_a_bulk_create_creates_none(
    client: Client, site: Site, store: Store
) -> None:
    Sim = sim()
    jobs = [Sim.submit(f"bad/{i}", n=i, save=False) for i in range(CREATE_CHUNK * 2 + 1)]
    last = jobs[-1]
    # changed in place after it was built: checked again when saved
    last.launch_params["a"] = 1  # type: ignore[assignment]
    with pytest.raises(JobError, match=r"Job 'bad/2\d+': field 'launch_params.a'"):
        await Job.objects.bulk_create(jobs)
    del last.launch_params["a"]
    last.tags["run"] = 3  # type: ignore[assignment]
    with pytest.raises(JobError, match=r"tags must map str to str"):
        await Job.objects.bulk_create(jobs)
    del last.tags["run"]
    last.data[1] = "x"  # type: ignore[index]
    with pytest.raises(JobError, match=r"data keys must be str"):
        await Job.objects.bulk_create(jobs)
    del last.data[1]  # type: ignore[arg-type]
    last.data["seen"] = {1, 2}
    with pytest.raises(JobError, match=r"Job 'bad/2\d+': data\['seen'\] is a set"):
        await Job.objects.bulk_create(jobs)
    del last.data["seen"]
    # assigned: refused at once, naming the field (the job keeps its value)
    with pytest.raises(JobError, match=r"Job 'bad/2\d+': field 'num_nodes'"):
        last.num_nodes = 0
    with pytest.raises(JobError, match=r"transfers must be a mapping of str to str, got None"):
        last.transfers = None  # type: ignore[assignment]
    assert (last.num_nodes, last.transfers) == (1, {})
    assert await store.db["jobs"].count_documents({}) == 0
    assert all(j.id is None for j in jobs)


async def test_app_given_by_class_name_or_id(client: Client, site: Site, store: Store) -> None:
    Sim = sim()
    await Sim.sync()
    (app,) = await store.apps.by_name("Sim")
    made = [
        await Job.objects.create("a", app_id=Sim, parameters={"n": 1}),
        await Job.objects.create("b", app_id="Sim", parameters={"n": 1}),
        await Job.objects.create("c", app_id=app.id, parameters={"n": 1}),
        await Job.objects.create("d", app_id="Sim", site="polaris", parameters={"n": 1}),
    ]
    assert {j.app_id for j in made} == {app.id}
    with pytest.raises(NotFound, match="no app named 'Nope'"):
        await Job.objects.create("e", app_id="Nope")
    with pytest.raises(NotFound, match="App 999 does not exist"):
        await Job.objects.create("e", app_id=999)
