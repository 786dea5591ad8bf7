"""The examples of Balsam's user guide page "Balsam Jobs" (docs/user-guide/jobs.md of
argonne-lcf/balsam), sections "Querying Jobs", "Updating Jobs" and "Deleting Jobs", each
run twice: as the page writes it on ``balsam_mq.blocking`` (only the import line changed)
and with ``await`` on ``balsam_mq``.

Numbers the page writes for ids (``app_id=123``, ``Site.objects.get(id=123)``) are the ids
of the apps, sites and jobs the test made; ``# ...other kwargs`` are filled in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from compat_helpers import Drive, Example, hello_jobs, ids

import balsam_mq as mq
from balsam_mq.domain import JobState
from balsam_mq.sdk import Site

S = JobState


# --- Querying Jobs --------------------------------------------------------------------------


async def test_filter_by_state_and_tags(example: Example, hello_app: mq.App, drive: Drive) -> None:
    """``Job.objects.filter(state="FAILED", tags={"experiment": "foo"})``"""
    failed_foo, _, failed_bar = await hello_jobs(
        ("a", {"experiment": "foo"}), ("b", {"experiment": "foo"}), ("c", {"experiment": "bar"})
    )
    await drive([failed_foo.id, failed_bar.id], S.FAILED)

    def script() -> list[int]:
        from balsam_mq.blocking import Job

        query = Job.objects.filter(state="FAILED", tags={"experiment": "foo"})
        return [job.id for job in query]

    async def coroutine() -> list[int]:
        from balsam_mq import Job

        query = Job.objects.filter(state="FAILED", tags={"experiment": "foo"})
        return [job.id async for job in query]

    assert await example.run(script, coroutine) == [failed_foo.id]


async def test_get_a_site_then_chain_job_queries(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``theta_site = Site.objects.get(name="theta", path="my-site")``
    ``foo_jobs = Job.objects.filter(site_id=theta_site.id, tags={"experiment": "foo"})``
    ``failed_workdirs = [j.workdir for j in foo_jobs.filter(state="FAILED")]``"""
    await mq.Site.objects.create(name="theta", path="my-site")

    class Hello(mq.ApplicationDefinition):
        site = "theta"
        command_template = "echo hello {{ name }}"

    jobs = await mq.Job.objects.bulk_create(
        [
            Hello.submit("foo/failed", name="x", tags={"experiment": "foo"}, save=False),
            Hello.submit("foo/done", name="x", tags={"experiment": "foo"}, save=False),
            Hello.submit("bar/failed", name="x", tags={"experiment": "bar"}, save=False),
        ]
    )
    (elsewhere,) = await hello_jobs(("foo/failed/theta-gpu", {"experiment": "foo"}))
    await drive([jobs[0].id, jobs[2].id, elsewhere.id], S.FAILED)
    await drive([jobs[1].id], S.JOB_FINISHED)

    def script() -> list[str]:
        from balsam_mq.blocking import Job, Site

        # This hits the network and immediately returns ONE Site object:
        theta_site = Site.objects.get(name="theta", path="my-site")

        # This doesn't hit the network yet:
        foo_jobs = Job.objects.filter(
            site_id=theta_site.id,
            tags={"experiment": "foo"},
        )

        # We chain the query and iterate, triggering HTTPS request:
        failed_workdirs = [j.workdir for j in foo_jobs.filter(state="FAILED")]
        return failed_workdirs

    async def coroutine() -> list[str]:
        from balsam_mq import Job, Site

        # This hits the network and immediately returns ONE Site object:
        theta_site = await Site.objects.get(name="theta", path="my-site")

        # This doesn't hit the network yet:
        foo_jobs = Job.objects.filter(
            site_id=theta_site.id,
            tags={"experiment": "foo"},
        )

        # We chain the query and iterate, triggering HTTPS request:
        failed_workdirs = [j.workdir async for j in foo_jobs.filter(state="FAILED")]
        return failed_workdirs

    assert await example.run(script, coroutine) == ["foo/failed"]


async def test_all_jobs_and_a_slice_of_them(example: Example, hello_app: mq.App) -> None:
    """``all_jobs = Job.objects.all()`` ``some_jobs = all_jobs[5:15]``"""
    jobs = await hello_jobs(*((f"w/{n}", {}) for n in range(20)))

    def script() -> tuple[list[int], list[int]]:
        from balsam_mq.blocking import Job

        all_jobs = Job.objects.all()
        some_jobs = all_jobs[5:15]
        return [j.id for j in all_jobs], [j.id for j in some_jobs]

    async def coroutine() -> tuple[list[int], list[int]]:
        from balsam_mq import Job

        all_jobs = Job.objects.all()
        some_jobs = all_jobs[5:15]
        return [j.id async for j in all_jobs], [j.id async for j in some_jobs]

    every, some = await example.run(script, coroutine)
    assert every == ids(jobs) and some == ids(jobs)[5:15]


async def test_count_the_running_jobs(example: Example, hello_app: mq.App, drive: Drive) -> None:
    """``Job.objects.filter(state="RUNNING").count()``"""
    jobs = await hello_jobs(("a", {}), ("b", {}), ("c", {}))
    await drive(ids(jobs[:2]), S.RUNNING)

    def script() -> int:
        from balsam_mq.blocking import Job

        return Job.objects.filter(state="RUNNING").count()

    async def coroutine() -> int:
        from balsam_mq import Job

        return await Job.objects.filter(state="RUNNING").count()

    assert await example.run(script, coroutine) == 2


async def test_ten_most_recently_finished(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``ten_most_recent_finished = Job.objects.filter(state="JOB_FINISHED")
    .order_by("-last_update")[:10]``"""
    jobs = await hello_jobs(*((f"w/{n}", {}) for n in range(13)))
    for job in jobs[:12]:  # one after the other: each finishes later than the one before
        await drive([job.id], S.JOB_FINISHED)

    def script() -> list[int]:
        from balsam_mq.blocking import Job

        ten_most_recent_finished = Job.objects.filter(state="JOB_FINISHED").order_by(
            "-last_update"
        )[:10]
        return [j.id for j in ten_most_recent_finished]

    async def coroutine() -> list[int]:
        from balsam_mq import Job

        ten_most_recent_finished = Job.objects.filter(state="JOB_FINISHED").order_by(
            "-last_update"
        )[:10]
        return [j.id for j in await ten_most_recent_finished]

    assert await example.run(script, coroutine) == ids(jobs[2:12])[::-1]


async def test_the_criteria_queries_are_built_on(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """ "We can build up queries based on numerous criteria": ``workdir__contains``, ``tags``,
    ``app_id``, ``state``, ``id`` (single or list of Job IDs), ``parent_id`` (single or list
    of Parent Job IDs). (``parameters``: see docs/sdk.md, "Coming from Balsam".)"""
    a, b, c = await hello_jobs(("run/a", {"k": "1"}), ("run/b", {"k": "2"}), ("other/c", {}))
    (child,) = await mq.Job.objects.bulk_create(
        [mq.Job("run/child", app_id="Hello", parameters={"name": "x"}, parent_ids=[a.id, b.id])]
    )
    await drive([c.id], S.FAILED)
    app_id = hello_app.id

    def script() -> dict[str, list[int]]:
        from balsam_mq.blocking import Job

        queries = {
            "workdir__contains": Job.objects.filter(workdir__contains="run/"),
            "tags": Job.objects.filter(tags={"k": "2"}),
            "app_id": Job.objects.filter(app_id=app_id),
            "state": Job.objects.filter(state="FAILED"),
            "id": Job.objects.filter(id=a.id),
            "id list": Job.objects.filter(id=[b.id, c.id]),
            "parent_id": Job.objects.filter(parent_id=a.id),
            "parent_id list": Job.objects.filter(parent_id=[b.id, c.id]),
        }
        return {name: [j.id for j in query] for name, query in queries.items()}

    async def coroutine() -> dict[str, list[int]]:
        from balsam_mq import Job

        queries = {
            "workdir__contains": Job.objects.filter(workdir__contains="run/"),
            "tags": Job.objects.filter(tags={"k": "2"}),
            "app_id": Job.objects.filter(app_id=app_id),
            "state": Job.objects.filter(state="FAILED"),
            "id": Job.objects.filter(id=a.id),
            "id list": Job.objects.filter(id=[b.id, c.id]),
            "parent_id": Job.objects.filter(parent_id=a.id),
            "parent_id list": Job.objects.filter(parent_id=[b.id, c.id]),
        }
        return {name: [j.id for j in await query] for name, query in queries.items()}

    assert await example.run(script, coroutine) == {
        "workdir__contains": [a.id, b.id, child.id],
        "tags": [b.id],
        "app_id": [a.id, b.id, c.id, child.id],
        "state": [c.id],
        "id": [a.id],
        "id list": [b.id, c.id],
        "parent_id": [child.id],
        "parent_id list": [child.id],
    }


async def test_failed_jobs_with_return_code_1_get_more_nodes_and_a_retry(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``failed = Job.objects.filter(workdir__contains="production-X", state="FAILED")``
    ``for job in failed: if job.return_code == 1: job.num_nodes = 16;
    job.state = "RESTART_READY"; job.save()``"""
    x1, x2, y1 = await hello_jobs(("production-X/1", {}), ("production-X/2", {}), ("p-Y/1", {}))
    await drive([x1.id, y1.id], S.FAILED, return_code=1)
    await drive([x2.id], S.FAILED, return_code=2)

    def script() -> None:
        from balsam_mq.blocking import Job

        failed = Job.objects.filter(workdir__contains="production-X", state="FAILED")

        for job in failed:
            if job.return_code == 1:
                job.num_nodes = 16
                job.state = "RESTART_READY"
                job.save()

    async def coroutine() -> None:
        from balsam_mq import Job

        failed = Job.objects.filter(workdir__contains="production-X", state="FAILED")

        async for job in failed:
            if job.return_code == 1:
                job.num_nodes = 16
                job.state = "RESTART_READY"
                await job.save()

    await example.run(script, coroutine)
    after = {j.workdir: (j.state, j.num_nodes) async for j in mq.Job.objects.all()}
    assert after == {
        "production-X/1": (S.RESTART_READY, 16),
        "production-X/2": (S.FAILED, 1),
        "p-Y/1": (S.FAILED, 1),
    }


async def test_the_workdir_resolves_under_the_site_data_directory(
    example: Example, hello_app: mq.App, theta_gpu: Site
) -> None:
    """``site = Site.objects.get(id=123)`` ``job = Job.objects.get(id=456)``
    ``abs_workdir = site.path / "data" / job.workdir``
    ``abs_workdir = job.resolve_workdir(site.path / "data")``"""
    (job,) = await hello_jobs(("test/1", {}))
    site_id, job_id = theta_gpu.id, job.id

    def script() -> tuple[Path, Path]:
        from balsam_mq.blocking import Job, Site

        # From a given Site and Job...
        site = Site.objects.get(id=site_id)
        job = Job.objects.get(id=job_id)

        # The workdir can be constructed with Path join operators:
        abs_workdir = site.path / "data" / job.workdir

        # Or with the helper method:
        same = job.resolve_workdir(site.path / "data")
        return abs_workdir, same

    async def coroutine() -> tuple[Path, Path]:
        from balsam_mq import Job, Site

        # From a given Site and Job...
        site = await Site.objects.get(id=site_id)
        job = await Job.objects.get(id=job_id)

        # The workdir can be constructed with Path join operators:
        abs_workdir = site.path / "data" / job.workdir

        # Or with the helper method:
        same = job.resolve_workdir(site.path / "data")
        return abs_workdir, same

    expected = Path("/projects/theta-gpu/data/test/1")
    assert await example.run(script, coroutine) == (expected, expected)


async def test_parent_query_iterates_over_the_parents(
    example: Example, hello_app: mq.App, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accessing Parents: ``parents = self.job.parent_query()`` ``for parent in parents:
    print("Parent workdir:", parent.workdir)`` (the page calls it in a ``preprocess`` hook;
    here the job is fetched by a script)."""
    p1, p2 = await hello_jobs(("parent/1", {}), ("parent/2", {}))
    (child,) = await mq.Job.objects.bulk_create(
        [mq.Job("child", app_id="Hello", parameters={"name": "x"}, parent_ids=[p1.id, p2.id])]
    )
    child_id = child.id

    def script() -> None:
        from balsam_mq.blocking import Job

        job = Job.objects.get(id=child_id)
        parents = job.parent_query()
        for parent in parents:
            print("Parent workdir:", parent.workdir)

    async def coroutine() -> None:
        from balsam_mq import Job

        job = await Job.objects.get(id=child_id)
        parents = job.parent_query()
        async for parent in parents:
            print("Parent workdir:", parent.workdir)

    capsys.readouterr()
    await example.run(script, coroutine)
    assert capsys.readouterr().out == "Parent workdir: parent/1\nParent workdir: parent/2\n"


# --- Updating and deleting Jobs ------------------------------------------------------------


async def test_run_all_the_failed_jobs_again(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``# Run all the Failed Jobs again:``
    ``Job.objects.filter(state="FAILED").update(state="RESTART_READY")``"""
    jobs = await hello_jobs(("a", {}), ("b", {}), ("c", {}))
    await drive(ids(jobs[:2]), S.FAILED)

    def script() -> int:
        from balsam_mq.blocking import Job

        # Run all the Failed Jobs again:
        return Job.objects.filter(state="FAILED").update(state="RESTART_READY")

    async def coroutine() -> int:
        from balsam_mq import Job

        # Run all the Failed Jobs again:
        return await Job.objects.filter(state="FAILED").update(state="RESTART_READY")

    assert await example.run(script, coroutine) == 2
    states = [j.state for j in await mq.Job.objects.order_by("id")]
    assert states == [S.RESTART_READY, S.RESTART_READY, S.PREPROCESSED]


async def test_delete_a_job_and_a_collection_of_jobs(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """``# Delete a single job:`` ``job.delete()`` ``# Delete a collection of Jobs:``
    ``Job.objects.filter(state="FAILED", tags={"run": "H2O"}).delete()``"""
    single, h2o_failed, _, co2_failed = await hello_jobs(
        ("single", {}),
        ("h2o/1", {"run": "H2O"}),
        ("h2o/2", {"run": "H2O"}),
        ("co2", {"run": "CO2"}),
    )
    await drive([h2o_failed.id, co2_failed.id], S.FAILED)
    single_id = single.id

    def script() -> None:
        from balsam_mq.blocking import Job

        job = Job.objects.get(id=single_id)

        # Delete a single job:
        job.delete()

        # Delete a collection of Jobs:
        Job.objects.filter(state="FAILED", tags={"run": "H2O"}).delete()

    async def coroutine() -> None:
        from balsam_mq import Job

        job = await Job.objects.get(id=single_id)

        # Delete a single job:
        await job.delete()

        # Delete a collection of Jobs:
        await Job.objects.filter(state="FAILED", tags={"run": "H2O"}).delete()

    await example.run(script, coroutine)
    assert [j.workdir for j in await mq.Job.objects.order_by("id")] == ["h2o/2", "co2"]
