"""The examples of Balsam's user guide page "The Python API" (docs/user-guide/api.md of
argonne-lcf/balsam), each run twice: as the page writes it on ``balsam_mq.blocking``
(only the import line changed) and with ``await`` on ``balsam_mq``.

``Job(...)`` and ``# ...`` in the page are filled with a Hello job at theta-gpu.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from compat_helpers import Drive, Example, hello_jobs, ids

import balsam_mq as mq
from balsam_mq.domain import JobState, utcnow
from balsam_mq.errors import MultipleResults, NotFound
from balsam_mq.sdk import Site
from balsam_mq.store import Store

S = JobState
HELLO = {"app_id": "Hello", "parameters": {"name": "world"}}  # the page's `...`


async def test_resources_are_imported_from_one_module(example: Example) -> None:
    """``from balsam.api import (Site, App, Job, BatchJob, TransferItem, EventLog)``
    (``TransferItem``: see docs/sdk.md, "Coming from Balsam")."""

    def script() -> list[Any]:
        from balsam_mq.blocking import (
            App,
            BatchJob,
            EventLog,
            Job,
            Site,
        )

        return [Site, App, Job, BatchJob, EventLog]

    async def coroutine() -> list[Any]:
        from balsam_mq import (
            App,
            BatchJob,
            EventLog,
            Job,
            Site,
        )

        return [Site, App, Job, BatchJob, EventLog]

    resources = await example.run(script, coroutine)
    assert [r.__name__ for r in resources] == ["Site", "App", "Job", "BatchJob", "EventLog"]
    plain = [mq.Site, mq.App, mq.Job, mq.BatchJob, mq.EventLog]
    for resource, twin in zip(resources, plain, strict=True):
        assert resource.__bases__ == twin.__bases__ and resource.objects is not None


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
async def test_recently_updated_jobs(example: Example, hello_app: mq.App, store: Store) -> None:
    """``hour_ago = datetime.utcnow() - timedelta(hours=1)``
    ``recently_updated_jobs = Job.objects.filter(last_update_after=hour_ago)`` (its
    ``Site.objects.filter(last_refresh_after=hour_ago)``: see docs/sdk.md)."""
    old, new = await hello_jobs("old", "new")
    await store.db["jobs"].update_one(
        {"_id": old.id}, {"$set": {"last_update": utcnow() - timedelta(hours=2)}}
    )

    def script() -> list[int]:
        from datetime import datetime, timedelta

        from balsam_mq.blocking import Job

        hour_ago = datetime.utcnow() - timedelta(hours=1)
        recently_updated_jobs = Job.objects.filter(last_update_after=hour_ago)
        return [j.id for j in recently_updated_jobs]

    async def coroutine() -> list[int]:
        from datetime import datetime, timedelta

        from balsam_mq import Job

        hour_ago = datetime.utcnow() - timedelta(hours=1)
        recently_updated_jobs = Job.objects.filter(last_update_after=hour_ago)
        return [j.id async for j in recently_updated_jobs]

    assert await example.run(script, coroutine) == [new.id]


# --- Creating --------------------------------------------------------------------------------


async def test_an_in_memory_job_has_an_id_once_saved(example: Example, hello_app: mq.App) -> None:
    """``j = Job(...)`` ``assert j.id is None`` ``j.save()`` ``assert j.id is not None``"""

    def script() -> Any:
        from balsam_mq.blocking import Job

        # Create in-memory with the required kwargs...
        j = Job("test/1", **HELLO)

        # New in-memory resources have no ID:
        assert j.id is None

        # ...then persist:
        j.save()
        assert j.id is not None
        return j

    async def coroutine() -> Any:
        from balsam_mq import Job

        # Create in-memory with the required kwargs...
        j = Job("test/1", **HELLO)

        # New in-memory resources have no ID:
        assert j.id is None

        # ...then persist:
        await j.save()
        assert j.id is not None
        return j

    j = await example.run(script, coroutine)
    assert (await mq.Job.objects.get(id=j.id)).workdir == "test/1"


async def test_objects_create_persists_in_one_step(example: Example, hello_app: mq.App) -> None:
    """``j = Job.objects.create(...)`` ``assert j.id is not None``"""

    def script() -> Any:
        from balsam_mq.blocking import Job

        j = Job.objects.create("test/1", **HELLO)
        assert j.id is not None
        return j

    async def coroutine() -> Any:
        from balsam_mq import Job

        j = await Job.objects.create("test/1", **HELLO)
        assert j.id is not None
        return j

    j = await example.run(script, coroutine)
    assert await mq.Job.objects.filter(id=j.id).exists()


async def test_bulk_create_gives_each_job_its_id(example: Example, hello_app: mq.App) -> None:
    """``jobs = [Job(**kwargs) for kwargs in job_specs]`` ``Job.objects.bulk_create(jobs)``
    ``for job in jobs: assert job.id is not None``"""
    job_specs = [{"workdir": f"test/{n}", **HELLO} for n in range(5)]

    def script() -> Any:
        from balsam_mq.blocking import Job

        jobs = [Job(**kwargs) for kwargs in job_specs]
        Job.objects.bulk_create(jobs)
        for job in jobs:
            assert job.id is not None
        return jobs

    async def coroutine() -> Any:
        from balsam_mq import Job

        jobs = [Job(**kwargs) for kwargs in job_specs]
        await Job.objects.bulk_create(jobs)
        for job in jobs:
            assert job.id is not None
        return jobs

    jobs = await example.run(script, coroutine)
    assert ids(await mq.Job.objects.order_by("id")) == ids(jobs)


# --- Updating --------------------------------------------------------------------------------


async def test_save_writes_a_changed_state(
    example: Example, hello_app: mq.App, store: Store, drive: Drive
) -> None:
    """``job.state = "RESTART_READY"`` ``job.save()``"""
    (job,) = await hello_jobs("test/1")
    await drive([job.id], S.FAILED)
    job_id = job.id

    def script() -> None:
        from balsam_mq.blocking import Job

        job = Job.objects.get(id=job_id)
        job.state = "RESTART_READY"
        job.save()

    async def coroutine() -> None:
        from balsam_mq import Job

        job = await Job.objects.get(id=job_id)
        job.state = "RESTART_READY"
        await job.save()

    await example.run(script, coroutine)
    assert (await store.jobs.get(job_id)).state == S.RESTART_READY


async def test_refresh_from_db_loads_recent_changes(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``# Re-fetch the Job & update fields:`` ``job.refresh_from_db()``"""
    (job,) = await hello_jobs("test/1")
    job_id = job.id

    def load() -> Any:
        from balsam_mq.blocking import Job

        return Job.objects.get(id=job_id)

    async def load_async() -> Any:
        from balsam_mq import Job

        return await Job.objects.get(id=job_id)

    job = await example.run(load, load_async)
    assert job.state == S.PREPROCESSED
    await drive([job_id], S.RUNNING)  # a launcher claims it meanwhile

    def script() -> None:
        # Re-fetch the Job & update fields:
        job.refresh_from_db()

    async def coroutine() -> None:
        # Re-fetch the Job & update fields:
        await job.refresh_from_db()

    await example.run(script, coroutine)
    assert job.state == S.RUNNING


async def test_update_every_failed_job_in_one_call(
    example: Example, hello_app: mq.App, store: Store, drive: Drive
) -> None:
    """``# Select all FAILED jobs, change num_nodes=1, and mark for retry``
    ``Job.objects.filter(state="FAILED").update(num_nodes=1, state="RESTART_READY")``"""
    jobs = await hello_jobs("a", "b", "c", num_nodes=4)
    await drive(ids(jobs[:2]), S.FAILED)

    def script() -> None:
        from balsam_mq.blocking import Job

        # Select all FAILED jobs, change num_nodes=1, and mark for retry
        Job.objects.filter(state="FAILED").update(num_nodes=1, state="RESTART_READY")

    async def coroutine() -> None:
        from balsam_mq import Job

        # Select all FAILED jobs, change num_nodes=1, and mark for retry
        await Job.objects.filter(state="FAILED").update(num_nodes=1, state="RESTART_READY")

    await example.run(script, coroutine)
    stored = await store.jobs.get_many(ids(jobs))
    assert [(j.state, j.resources.num_nodes) for j in stored] == [
        (S.RESTART_READY, 1),
        (S.RESTART_READY, 1),
        (S.PREPROCESSED, 4),
    ]


async def test_bulk_update_saves_each_job_its_own_way(
    example: Example, hello_app: mq.App, store: Store, drive: Drive
) -> None:
    """``# Mutated jobs to be updated, each in their own way:``
    ``Job.objects.bulk_update(modified_jobs)``"""
    jobs = await hello_jobs("a", "b", "c")
    await drive([jobs[0].id], S.FAILED)
    job_ids = ids(jobs)

    def script() -> None:
        from balsam_mq.blocking import Job

        modified_jobs = list(Job.objects.filter(id=job_ids).order_by("id"))
        modified_jobs[0].state = "RESTART_READY"
        modified_jobs[0].num_nodes = 8
        modified_jobs[1].data = {"note": "check me"}
        modified_jobs[2].tags["run"] = "H2O"

        # Mutated jobs to be updated, each in their own way:
        Job.objects.bulk_update(modified_jobs)

    async def coroutine() -> None:
        from balsam_mq import Job

        modified_jobs = await Job.objects.filter(id=job_ids).order_by("id")
        modified_jobs[0].state = "RESTART_READY"
        modified_jobs[0].num_nodes = 8
        modified_jobs[1].data = {"note": "check me"}
        modified_jobs[2].tags["run"] = "H2O"

        # Mutated jobs to be updated, each in their own way:
        await Job.objects.bulk_update(modified_jobs)

    await example.run(script, coroutine)
    a, b, c = await store.jobs.get_many(job_ids)
    assert (a.state, a.resources.num_nodes, a.data, a.tags) == (S.RESTART_READY, 8, {}, {})
    assert (b.state, b.resources.num_nodes, b.data, b.tags) == (
        S.PREPROCESSED,
        1,
        {"note": "check me"},
        {},
    )
    assert (c.state, c.data, c.tags) == (S.PREPROCESSED, {}, {"run": "H2O"})


# --- Deleting --------------------------------------------------------------------------------


async def test_a_deleted_job_has_no_id(example: Example, hello_app: mq.App) -> None:
    """``job.delete()`` ``assert job.id is None``"""
    kept, gone = await hello_jobs("kept", "gone")
    gone_id = gone.id

    def script() -> None:
        from balsam_mq.blocking import Job

        job = Job.objects.get(id=gone_id)
        job.delete()
        assert job.id is None

    async def coroutine() -> None:
        from balsam_mq import Job

        job = await Job.objects.get(id=gone_id)
        await job.delete()
        assert job.id is None

    await example.run(script, coroutine)
    assert ids(await mq.Job.objects.all()) == [kept.id]


async def test_delete_the_jobs_a_query_matches(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``Job.objects.filter(state="FAILED").delete()``"""
    jobs = await hello_jobs("a", "b", "c")
    await drive(ids(jobs[1:]), S.FAILED)

    def script() -> None:
        from balsam_mq.blocking import Job

        Job.objects.filter(state="FAILED").delete()

    async def coroutine() -> None:
        from balsam_mq import Job

        await Job.objects.filter(state="FAILED").delete()

    await example.run(script, coroutine)
    assert ids(await mq.Job.objects.all()) == [jobs[0].id]


# --- Querying --------------------------------------------------------------------------------


async def test_all_jobs_are_listed(
    example: Example, hello_app: mq.App, capsys: pytest.CaptureFixture[str]
) -> None:
    """``for job in Job.objects.all(): print(job)``"""
    jobs = await hello_jobs("a", "b")

    def script() -> None:
        from balsam_mq.blocking import Job

        for job in Job.objects.all():
            print(job)

    async def coroutine() -> None:
        from balsam_mq import Job

        async for job in Job.objects.all():
            print(job)

    capsys.readouterr()
    await example.run(script, coroutine)
    assert capsys.readouterr().out.splitlines() == [
        f"Job(id={job.id}, app={hello_app.id}, workdir={job.workdir!r}, state=PREPROCESSED)"
        for job in jobs
    ]


async def test_chained_filters_are_one_filter(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``all_jobs = Job.objects.all()`` ``foo_jobs = all_jobs.filter(tags={"experiment":
    "foo"})`` ``failed_foo_jobs = foo_jobs.filter(state="FAILED")`` "...are equivalent to
    this 1 query:" ``failed_foo_jobs = Job.objects.filter(tags={"experiment": "foo"},
    state="FAILED")``"""
    foo = await hello_jobs("foo/1", "foo/2", tags={"experiment": "foo"})
    bar = await hello_jobs("bar/1", tags={"experiment": "bar"})
    await drive([foo[0].id, bar[0].id], S.FAILED)

    def script() -> tuple[list[int], list[int]]:
        from balsam_mq.blocking import Job

        # These 3 chained queries...
        all_jobs = Job.objects.all()
        foo_jobs = all_jobs.filter(tags={"experiment": "foo"})
        failed_foo_jobs = foo_jobs.filter(state="FAILED")
        chained = [j.id for j in failed_foo_jobs]

        # ...are equivalent to this 1 query:
        failed_foo_jobs = Job.objects.filter(tags={"experiment": "foo"}, state="FAILED")
        return chained, [j.id for j in failed_foo_jobs]

    async def coroutine() -> tuple[list[int], list[int]]:
        from balsam_mq import Job

        # These 3 chained queries...
        all_jobs = Job.objects.all()
        foo_jobs = all_jobs.filter(tags={"experiment": "foo"})
        failed_foo_jobs = foo_jobs.filter(state="FAILED")
        chained = [j.id async for j in failed_foo_jobs]

        # ...are equivalent to this 1 query:
        failed_foo_jobs = Job.objects.filter(tags={"experiment": "foo"}, state="FAILED")
        return chained, [j.id async for j in failed_foo_jobs]

    assert await example.run(script, coroutine) == ([foo[0].id], [foo[0].id])


async def test_order_by_and_a_slice(example: Example, hello_app: mq.App, drive: Drive) -> None:
    """``# 1000 most recent failures``
    ``Job.objects.filter(state="FAILED").order_by("-last_update")[0:1000]``"""
    jobs = await hello_jobs(*(f"w/{n}" for n in range(4)))
    for job in jobs[:3]:  # one after the other
        await drive([job.id], S.FAILED)

    def script() -> list[int]:
        from balsam_mq.blocking import Job

        # 1000 most recent failures
        query = Job.objects.filter(state="FAILED").order_by("-last_update")[0:1000]
        return [j.id for j in query]

    async def coroutine() -> list[int]:
        from balsam_mq import Job

        # 1000 most recent failures
        query = Job.objects.filter(state="FAILED").order_by("-last_update")[0:1000]
        return [j.id for j in await query]

    assert await example.run(script, coroutine) == ids(jobs[:3])[::-1]


async def test_get_raises_the_model_scoped_errors(
    example: Example, hello_app: mq.App, capsys: pytest.CaptureFixture[str]
) -> None:
    """``try: h2o_job = Job.objects.get(tags={"system": "H2O"})``
    ``except Job.DoesNotExist: print("There is no finished H2O job!")``
    ``except Job.MultipleObjectsReturned: print("There is more than one finished H2O job!")``
    """

    def script() -> Any:
        from balsam_mq.blocking import Job

        h2o_job = None
        try:
            h2o_job = Job.objects.get(tags={"system": "H2O"})
        except Job.DoesNotExist:
            print("There is no finished H2O job!")
        except Job.MultipleObjectsReturned:
            print("There is more than one finished H2O job!")
        return h2o_job

    async def coroutine() -> Any:
        from balsam_mq import Job

        h2o_job = None
        try:
            h2o_job = await Job.objects.get(tags={"system": "H2O"})
        except Job.DoesNotExist:
            print("There is no finished H2O job!")
        except Job.MultipleObjectsReturned:
            print("There is more than one finished H2O job!")
        return h2o_job

    capsys.readouterr()
    assert await example.run(script, coroutine) is None
    assert capsys.readouterr().out == "There is no finished H2O job!\n"
    (one,) = await hello_jobs("h2o/1", tags={"system": "H2O"})
    assert (await example.run(script, coroutine)).id == one.id
    await hello_jobs("h2o/2", tags={"system": "H2O"})
    assert await example.run(script, coroutine) is None
    assert capsys.readouterr().out == "There is more than one finished H2O job!\n"
    # scoped to the model, and still the errors every query raises
    assert issubclass(mq.Job.DoesNotExist, NotFound)
    assert issubclass(mq.Job.MultipleObjectsReturned, MultipleResults)
    assert mq.Job.DoesNotExist is not mq.Site.DoesNotExist
    with pytest.raises(mq.Site.DoesNotExist, match="no sites match"):
        await mq.Site.objects.get(name="nowhere")


async def test_count_the_jobs_in_each_state(
    example: Example, hello_app: mq.App, drive: Drive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``for state in ["RUNNING", "JOB_FINISHED"]:``
    ``count = Job.objects.filter(state=state).count()`` ``print(state, count)``"""
    jobs = await hello_jobs("a", "b", "c", "d")
    await drive(ids(jobs[:2]), S.RUNNING)
    await drive([jobs[2].id], S.JOB_FINISHED)

    def script() -> None:
        from balsam_mq.blocking import Job

        for state in ["RUNNING", "JOB_FINISHED"]:
            count = Job.objects.filter(state=state).count()
            print(state, count)

    async def coroutine() -> None:
        from balsam_mq import Job

        for state in ["RUNNING", "JOB_FINISHED"]:
            count = await Job.objects.filter(state=state).count()
            print(state, count)

    capsys.readouterr()
    await example.run(script, coroutine)
    assert capsys.readouterr().out == "RUNNING 2\nJOB_FINISHED 1\n"


async def test_the_first_item_by_index_or_first(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``one = Job.objects.filter(state="RUNNING")[0]``
    ``same_thing = Job.objects.filter(state="RUNNING").first()``"""
    jobs = await hello_jobs("a", "b", "c")
    await drive(ids(jobs[1:]), S.RUNNING)

    def script() -> tuple[int, int]:
        from balsam_mq.blocking import Job

        one = Job.objects.filter(state="RUNNING")[0]

        same_thing = Job.objects.filter(state="RUNNING").first()
        with pytest.raises(IndexError):
            Job.objects.filter(state="FAILED")[0]
        return one.id, same_thing.id

    async def coroutine() -> tuple[int, int]:
        from balsam_mq import Job

        one = await Job.objects.filter(state="RUNNING")[0]

        same_thing = await Job.objects.filter(state="RUNNING").first()
        with pytest.raises(IndexError):
            await Job.objects.filter(state="FAILED")[0]
        return one.id, same_thing.id

    assert await example.run(script, coroutine) == (jobs[1].id, jobs[1].id)


async def test_queries_are_evaluated_when_iterated(
    example: Example, hello_app: mq.App, drive: Drive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``# This doesn't fetch any Jobs yet:`` ``failed_jobs = Job.objects.filter(state=
    "FAILED")`` ``# This triggers the HTTP request:`` ``for job in failed_jobs: print(job)``
    ``for job in failed_jobs: print("Again!", job)``
    ``running_jobs = list(Job.objects.filter(state="RUNNING"))`` (each iteration reads
    again: see docs/sdk.md, "Coming from Balsam")."""
    jobs = await hello_jobs("a", "b", "c")

    def build() -> Any:
        from balsam_mq.blocking import Job

        # This doesn't fetch any Jobs yet:
        failed_jobs = Job.objects.filter(state="FAILED")
        return failed_jobs

    async def build_async() -> Any:
        from balsam_mq import Job

        # This doesn't fetch any Jobs yet:
        failed_jobs = Job.objects.filter(state="FAILED")
        return failed_jobs

    failed_jobs = await example.run(build, build_async)
    await drive([jobs[0].id], S.FAILED)  # after the query was built: it is seen
    await drive([jobs[1].id], S.RUNNING)

    def script() -> list[int]:
        from balsam_mq.blocking import Job

        # This triggers the HTTP request:
        for job in failed_jobs:
            print(job)

        # This re-uses the cached result:
        for job in failed_jobs:
            print("Again!", job)

        # We can explicitly force iteration and store the result:
        running_jobs = list(Job.objects.filter(state="RUNNING"))
        return [j.id for j in running_jobs]

    async def coroutine() -> list[int]:
        from balsam_mq import Job

        # This triggers the HTTP request:
        async for job in failed_jobs:
            print(job)

        # This re-uses the cached result:
        async for job in failed_jobs:
            print("Again!", job)

        # We can explicitly force iteration and store the result:
        running_jobs = await Job.objects.filter(state="RUNNING")
        return [j.id for j in running_jobs]

    capsys.readouterr()
    assert await example.run(script, coroutine) == [jobs[1].id]
    failed = f"Job(id={jobs[0].id}, app={hello_app.id}, workdir='a', state=FAILED)"
    assert capsys.readouterr().out == f"{failed}\nAgain! {failed}\n"


async def test_sites_apps_and_batch_jobs_share_the_methods(
    example: Example, hello_app: mq.App, theta_gpu: Site
) -> None:
    """ "all the Python API resources (``Site``, ``App``, ``Job``, ``BatchJob``, ...) share
    the same methods and data structures for creating, querying, updating, and deleting
    resources": "querying your ``Sites`` looks just like querying your ``Jobs``"."""
    await mq.Site.objects.create(name="polaris", path="/projects/polaris")
    site_id = theta_gpu.id

    def script() -> dict[str, Any]:
        from balsam_mq.blocking import App, BatchJob, Site

        site = Site.objects.get(name="theta-gpu")
        app = App.objects.get(site_id=site.id, name="Hello")
        batch_job = BatchJob.objects.create(
            site_id=site.id,
            num_nodes=2,
            wall_time_min=30,
            job_mode="mpi",
            project="datascience",
            queue="debug",
            filter_tags={"experiment": "foo"},
        )
        BatchJob.objects.filter(site_id=site.id).update(queue="prod")
        return {
            "sites": [s.name for s in Site.objects.all().order_by("name")],
            "site": site.id,
            "app": app.id,
            "apps at the site": App.objects.filter(site_id=site.id).count(),
            "batch job": BatchJob.objects.get(id=batch_job.id).queue,
        }

    async def coroutine() -> dict[str, Any]:
        from balsam_mq import App, BatchJob, Site

        site = await Site.objects.get(name="theta-gpu")
        app = await App.objects.get(site_id=site.id, name="Hello")
        batch_job = await BatchJob.objects.create(
            site_id=site.id,
            num_nodes=2,
            wall_time_min=30,
            job_mode="mpi",
            project="datascience",
            queue="debug",
            filter_tags={"experiment": "foo"},
        )
        await BatchJob.objects.filter(site_id=site.id).update(queue="prod")
        return {
            "sites": [s.name for s in await Site.objects.all().order_by("name")],
            "site": site.id,
            "app": app.id,
            "apps at the site": await App.objects.filter(site_id=site.id).count(),
            "batch job": (await BatchJob.objects.get(id=batch_job.id)).queue,
        }

    assert await example.run(script, coroutine) == {
        "sites": ["polaris", "theta-gpu"],
        "site": site_id,
        "app": hello_app.id,
        "apps at the site": 1,
        "batch job": "prod",
    }
