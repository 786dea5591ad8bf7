"""The examples of Balsam's user guide page "Balsam Jobs" (docs/user-guide/jobs.md of
argonne-lcf/balsam), section "Creating Jobs" (API job creation, tagging, data, compute
resources, parent job dependencies, data transfer), each run twice: as the page writes it
on ``balsam_mq.blocking`` (only the import line changed) and with ``await`` on
``balsam_mq``.

Numbers the page writes for ids (``app_id=123``, ``Site.objects.get(id=123)``) are the ids
of the apps, sites and jobs the test made; ``# ...other kwargs`` are filled in.
"""

from __future__ import annotations

from typing import Any

import pytest
from compat_helpers import Drive, Example, hello_jobs, ids

import balsam_mq as mq
from balsam_mq.domain import JobState
from balsam_mq.errors import BalsamError
from balsam_mq.sdk import Site
from balsam_mq.store import Store

S = JobState


# --- Creating Jobs: API Job Creation ----------------------------------------------------


async def test_job_by_app_id_is_saved(example: Example, hello_app: mq.App, store: Store) -> None:
    """``job = Job(app_id=123, workdir="test/1", parameters={"name": "world!"})``
    ``job.save()``"""
    app_id = hello_app.id

    def script() -> Any:
        from balsam_mq.blocking import Job

        job = Job(app_id=app_id, workdir="test/1", parameters={"name": "world!"})
        job.save()
        return job

    async def coroutine() -> Any:
        from balsam_mq import Job

        job = Job(app_id=app_id, workdir="test/1", parameters={"name": "world!"})
        await job.save()
        return job

    job = await example.run(script, coroutine)
    stored = await store.jobs.get(job.id)
    assert (stored.app_id, stored.workdir, stored.state) == (app_id, "test/1", S.PREPROCESSED)
    assert (await mq.Job.objects.get(id=job.id)).parameters == {"name": "world!"}


async def test_job_by_app_name_and_site_name(
    example: Example, hello_app: mq.App, theta_gpu: Site
) -> None:
    """``job = Job(app_id="Hello", site_name="theta-gpu", workdir="test/1",
    parameters={"name": "world!"})`` ``job.save()``: the site disambiguates an app name
    used at several sites."""

    class Hello(mq.ApplicationDefinition):  # the same name at another site
        site = "polaris"
        command_template = "echo hello {{ name }}"

    await mq.Site.objects.create(name="polaris")
    await Hello.sync()

    def script() -> Any:
        from balsam_mq.blocking import Job

        job = Job(
            app_id="Hello",
            site_name="theta-gpu",
            workdir="test/1",
            parameters={"name": "world!"},
        )
        job.save()
        return job

    async def coroutine() -> Any:
        from balsam_mq import Job

        job = Job(
            app_id="Hello",
            site_name="theta-gpu",
            workdir="test/1",
            parameters={"name": "world!"},
        )
        await job.save()
        return job

    job = await example.run(script, coroutine)
    assert (job.app_id, job.site_id) == (hello_app.id, theta_gpu.id)
    with pytest.raises(BalsamError, match="Hello"):  # without the site: which Hello?
        await mq.Job(app_id="Hello", workdir="test/2", parameters={"name": "?"}).save()


async def test_objects_create_creates_and_saves(example: Example, hello_app: mq.App) -> None:
    """``job = Job.objects.create(app_id=123, ...)`` — "don't need to call job.save()"."""
    app_id = hello_app.id

    def script() -> Any:
        from balsam_mq.blocking import Job

        job = Job.objects.create(app_id=app_id, workdir="test/1", parameters={"name": "x"})
        return job

    async def coroutine() -> Any:
        from balsam_mq import Job

        job = await Job.objects.create(app_id=app_id, workdir="test/1", parameters={"name": "x"})
        return job

    job = await example.run(script, coroutine)
    assert job.id is not None and job.state == S.PREPROCESSED
    assert (await mq.Job.objects.get(id=job.id)).workdir == "test/1"


async def test_bulk_create_returns_the_created_jobs(example: Example, hello_app: mq.App) -> None:
    """``jobs = [Job(app_id=123, workdir=f"test/{n}", parameters={"name": f"world {n}!"})
    for n in range(10)]`` ``jobs = Job.objects.bulk_create(jobs)``"""
    app_id = hello_app.id

    def script() -> Any:
        from balsam_mq.blocking import Job

        jobs = [
            Job(app_id=app_id, workdir=f"test/{n}", parameters={"name": f"world {n}!"})
            for n in range(10)
        ]

        # Capture `jobs` as return value!
        jobs = Job.objects.bulk_create(jobs)
        return jobs

    async def coroutine() -> Any:
        from balsam_mq import Job

        jobs = [
            Job(app_id=app_id, workdir=f"test/{n}", parameters={"name": f"world {n}!"})
            for n in range(10)
        ]

        # Capture `jobs` as return value!
        jobs = await Job.objects.bulk_create(jobs)
        return jobs

    jobs = await example.run(script, coroutine)
    assert all(j.id is not None for j in jobs)
    stored = await mq.Job.objects.filter(app_id=app_id).order_by("id")
    assert ids(stored) == ids(jobs)
    assert [j.parameters["name"] for j in stored] == [f"world {n}!" for n in range(10)]


async def test_submit_passes_other_keywords_as_parameters(
    example: Example, hello_app: mq.App
) -> None:
    """``job = Hello.submit(workdir="test/123", name="world!")``"""

    def script() -> Any:
        from balsam_mq.blocking import ApplicationDefinition

        class Hello(ApplicationDefinition):
            site = "theta-gpu"
            command_template = "echo hello {{ name }}"

        job = Hello.submit(workdir="test/123", name="world!")
        return job

    async def coroutine() -> Any:
        from balsam_mq import ApplicationDefinition

        class Hello(ApplicationDefinition):
            site = "theta-gpu"
            command_template = "echo hello {{ name }}"

        job = await Hello.submit(workdir="test/123", name="world!")
        return job

    job = await example.run(script, coroutine)
    assert job.app_id == hello_app.id  # the same app: found by site and class name
    stored = await mq.Job.objects.get(id=job.id)
    assert (stored.workdir, stored.parameters) == ("test/123", {"name": "world!"})


async def test_submit_without_save_then_bulk_create(example: Example, theta_gpu: Site) -> None:
    """``jobs = [Hello.submit(workdir=f"test/{n}", say_hello_to=f"world {n}!", save=False)
    for n in range(10)]`` ``jobs = Job.objects.bulk_create(jobs) # efficient creation``"""

    def script() -> Any:
        from balsam_mq.blocking import ApplicationDefinition, Job

        class Hello(ApplicationDefinition):
            site = "theta-gpu"
            command_template = "echo Hello, {{ say_hello_to }}!"

        jobs = [
            Hello.submit(workdir=f"test/{n}", say_hello_to=f"world {n}!", save=False)
            for n in range(10)
        ]
        assert all(job.id is None for job in jobs)
        jobs = Job.objects.bulk_create(jobs)  # efficient creation
        return jobs

    async def coroutine() -> Any:
        from balsam_mq import ApplicationDefinition, Job

        class Hello(ApplicationDefinition):
            site = "theta-gpu"
            command_template = "echo Hello, {{ say_hello_to }}!"

        jobs = [
            Hello.submit(workdir=f"test/{n}", say_hello_to=f"world {n}!", save=False)
            for n in range(10)
        ]
        assert all(job.id is None for job in jobs)
        jobs = await Job.objects.bulk_create(jobs)  # efficient creation
        return jobs

    jobs = await example.run(script, coroutine)
    stored = await mq.Job.objects.filter(id=ids(jobs)).order_by("id")
    assert [j.parameters for j in stored] == [{"say_hello_to": f"world {n}!"} for n in range(10)]


# --- Tagging, data, resources, parents, transfers -----------------------------------------


async def test_tagged_jobs_are_found_by_tag(
    example: Example, hello_app: mq.App, drive: Drive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``Job.objects.create(# ...other kwargs here, tags={"experiment": "foo", "system":
    "H2O", "run": "5"})`` then ``for job in Job.objects.filter(tags={"experiment": "foo"}):
    if job.state == "JOB_FINISHED": print("Finished:", job.workdir)``"""
    done, _, other = await hello_jobs(
        ("foo/done", {"experiment": "foo"}),
        ("foo/waiting", {"experiment": "foo"}),
        ("bar/done", {"experiment": "bar"}),
    )
    await drive([done.id, other.id], S.JOB_FINISHED)

    def script() -> Any:
        from balsam_mq.blocking import Job

        job = Job.objects.create(
            workdir="foo/new",
            app_id="Hello",
            parameters={"name": "x"},
            tags={"experiment": "foo", "system": "H2O", "run": "5"},
        )
        for job in Job.objects.filter(tags={"experiment": "foo"}):
            if job.state == "JOB_FINISHED":
                print("Finished:", job.workdir)
        return job

    async def coroutine() -> Any:
        from balsam_mq import Job

        job = await Job.objects.create(
            workdir="foo/new",
            app_id="Hello",
            parameters={"name": "x"},
            tags={"experiment": "foo", "system": "H2O", "run": "5"},
        )
        async for job in Job.objects.filter(tags={"experiment": "foo"}):
            if job.state == "JOB_FINISHED":
                print("Finished:", job.workdir)
        return job

    capsys.readouterr()
    created = await example.run(script, coroutine)
    assert capsys.readouterr().out == "Finished: foo/done\n"
    stored = await mq.Job.objects.get(workdir="foo/new")
    assert stored.tags == {"experiment": "foo", "system": "H2O", "run": "5"}
    assert created.workdir == "foo/new"  # the last job of the loop: the new one, not finished


async def test_jobs_are_created_with_data(example: Example, hello_app: mq.App) -> None:
    """``Job.objects.create(# ...other kwargs here, data={"retry_count": 0,
    "input_coords": coords})``"""
    coords = [[0.0, 0.0, 0.0], [0.0, 0.76, 0.59]]

    def script() -> Any:
        from balsam_mq.blocking import Job

        return Job.objects.create(
            workdir="h2o/1",
            app_id="Hello",
            parameters={"name": "x"},
            data={"retry_count": 0, "input_coords": coords},
        )

    async def coroutine() -> Any:
        from balsam_mq import Job

        return await Job.objects.create(
            workdir="h2o/1",
            app_id="Hello",
            parameters={"name": "x"},
            data={"retry_count": 0, "input_coords": coords},
        )

    job = await example.run(script, coroutine)
    stored = await mq.Job.objects.get(id=job.id)
    assert stored.data == {"retry_count": 0, "input_coords": coords}


async def test_job_data_is_updated_by_assigning_a_merged_dict(
    example: Example, hello_app: mq.App
) -> None:
    """``job = Job.objects.get(tags={"experiment": "foo"}, workdir__contains="foo/20")``
    ``dat = job.data`` ``retry_count = dat["retry_count"] + 1``
    ``job.data = {**dat, "retry_count": retry_count + 1}`` ``job.save()``"""
    await mq.Job.objects.bulk_create(
        [
            mq.Job(
                workdir,
                app_id="Hello",
                parameters={"name": "x"},
                tags={"experiment": experiment},
                data={"retry_count": 0, "input_coords": [1, 2]},
            )
            for workdir, experiment in (("foo/20", "foo"), ("foo/21", "foo"), ("bar/20", "bar"))
        ]
    )

    def script() -> None:
        from balsam_mq.blocking import Job

        job = Job.objects.get(tags={"experiment": "foo"}, workdir__contains="foo/20")
        dat = job.data
        retry_count = dat["retry_count"] + 1

        # Merge the old job.data with an incremented value:
        job.data = {**dat, "retry_count": retry_count + 1}
        job.save()

    async def coroutine() -> None:
        from balsam_mq import Job

        job = await Job.objects.get(tags={"experiment": "foo"}, workdir__contains="foo/20")
        dat = job.data
        retry_count = dat["retry_count"] + 1

        # Merge the old job.data with an incremented value:
        job.data = {**dat, "retry_count": retry_count + 1}
        await job.save()

    await example.run(script, coroutine)
    data = {j.workdir: j.data async for j in mq.Job.objects.all()}
    assert data == {  # the page adds one twice
        "foo/20": {"retry_count": 2, "input_coords": [1, 2]},
        "foo/21": {"retry_count": 0, "input_coords": [1, 2]},
        "bar/20": {"retry_count": 0, "input_coords": [1, 2]},
    }


async def test_compute_resources_are_job_arguments(
    example: Example, hello_app: mq.App, store: Store
) -> None:
    """Defining Compute Resources: ``num_nodes``, ``ranks_per_node``, ``threads_per_rank``,
    ``threads_per_core``, ``launch_params``, ``gpus_per_rank``, ``node_packing_count``,
    ``wall_time_min`` "can be specified via the Python API ... when creating new Jobs"."""
    resources = {
        "num_nodes": 2,
        "ranks_per_node": 4,
        "threads_per_rank": 2,
        "threads_per_core": 2,
        "launch_params": {"cpu_bind": "depth"},
        "gpus_per_rank": 1,
        "node_packing_count": 8,
        "wall_time_min": 30,
    }

    def script() -> Any:
        from balsam_mq.blocking import Job

        return Job.objects.create(
            workdir="mpi/1", app_id="Hello", parameters={"name": "x"}, **resources
        )

    async def coroutine() -> Any:
        from balsam_mq import Job

        return await Job.objects.create(
            workdir="mpi/1", app_id="Hello", parameters={"name": "x"}, **resources
        )

    job = await example.run(script, coroutine)
    assert (await store.jobs.get(job.id)).resources.model_dump() == resources
    assert {name: getattr(job, name) for name in resources} == resources


async def test_parent_ids_make_a_job_wait_for_its_parents(
    example: Example, hello_app: mq.App
) -> None:
    """``Job.objects.create(# ...other kwargs, parent_ids=[job1.id, job2.id])``: "every
    Job waits to begin executing until all of its parents reach the JOB_FINISHED state"."""
    job1, job2 = await hello_jobs(("parent/1", {}), ("parent/2", {}))

    def script() -> Any:
        from balsam_mq.blocking import Job

        return Job.objects.create(
            workdir="child", app_id="Hello", parameters={"name": "x"}, parent_ids=[job1.id, job2.id]
        )

    async def coroutine() -> Any:
        from balsam_mq import Job

        return await Job.objects.create(
            workdir="child", app_id="Hello", parameters={"name": "x"}, parent_ids=[job1.id, job2.id]
        )

    job = await example.run(script, coroutine)
    stored = await mq.Job.objects.get(id=job.id)
    assert (stored.state, stored.parent_ids) == (S.AWAITING_PARENTS, [job1.id, job2.id])


async def test_transfers_fill_the_app_transfer_slots(example: Example, theta_gpu: Site) -> None:
    """``Job.objects.create(# ...other kwargs, transfers={# Using 'laptop' alias defined in
    settings.yml "input_file": "laptop:/path/to/input.dat", "result":
    "laptop:/path/to/output.json",},)``"""

    class MySimulation(mq.ApplicationDefinition):
        site = "theta-gpu"
        command_template = "sim.exe -inp input.dat"
        transfers = {
            "input_file": {"required": True, "direction": "in", "local_path": "input.dat"},
            "result": {"required": True, "direction": "out", "local_path": "output.json"},
        }

    await MySimulation.sync()

    def script() -> Any:
        from balsam_mq.blocking import Job

        return Job.objects.create(
            workdir="sim/1",
            app_id="MySimulation",
            transfers={
                # Using 'laptop' alias defined in settings.yml
                "input_file": "laptop:/path/to/input.dat",
                "result": "laptop:/path/to/output.json",
            },
        )

    async def coroutine() -> Any:
        from balsam_mq import Job

        return await Job.objects.create(
            workdir="sim/1",
            app_id="MySimulation",
            transfers={
                # Using 'laptop' alias defined in settings.yml
                "input_file": "laptop:/path/to/input.dat",
                "result": "laptop:/path/to/output.json",
            },
        )

    job = await example.run(script, coroutine)
    stored = await mq.Job.objects.get(id=job.id)
    assert stored.transfers == {
        "input_file": "laptop:/path/to/input.dat",
        "result": "laptop:/path/to/output.json",
    }
    assert stored.state == S.READY  # waiting for its stage-in
