"""The examples of Balsam's user guide page "Balsam Jobs" (docs/user-guide/jobs.md of
argonne-lcf/balsam), section "Python App Futures", each run twice: as the page writes it on
``balsam_mq.blocking`` (only the import line changed) and with ``await`` on ``balsam_mq``.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from compat_helpers import Drive, Example, adder, ids

import balsam_mq as mq
from balsam_mq.domain import JobState
from balsam_mq.sdk import Site

S = JobState


# --- Python App Futures ----------------------------------------------------------------------


async def test_result_is_the_return_value_of_run(
    example: Example, theta_gpu: Site, launcher: None
) -> None:
    """``job = Adder.submit("test/123", x=3, y=7)`` ``assert job.result() == 3 + 7``"""

    def script() -> Any:
        from balsam_mq.blocking import ApplicationDefinition

        Adder = adder(ApplicationDefinition)
        job = Adder.submit("test/123", x=3, y=7)
        assert job.result() == 3 + 7
        return job

    async def coroutine() -> Any:
        from balsam_mq import ApplicationDefinition

        Adder = adder(ApplicationDefinition)
        job = await Adder.submit("test/123", x=3, y=7)
        assert await job.result() == 3 + 7
        return job

    job = await example.run(script, coroutine)
    assert job.state == S.JOB_FINISHED


async def test_result_with_a_timeout_raises_timeout_error(
    example: Example, theta_gpu: Site
) -> None:
    """ "If the Job does not complete within the timeout period, it will raise
    ``concurrent.futures.TimeoutError``"."""

    def script() -> None:
        from balsam_mq.blocking import ApplicationDefinition

        job = adder(ApplicationDefinition).submit("test/123", x=3, y=7)
        with pytest.raises(concurrent.futures.TimeoutError):
            job.result(timeout=0.2)

    async def coroutine() -> None:
        from balsam_mq import ApplicationDefinition

        job = await adder(ApplicationDefinition).submit("test/123", x=3, y=7)
        with pytest.raises(concurrent.futures.TimeoutError):
            await job.result(timeout=0.2)

    await example.run(script, coroutine)


async def test_result_nowait_raises_no_result_until_the_job_is_done(
    example: Example, theta_gpu: Site, drive: Drive
) -> None:
    """ "``result_nowait()`` will return the result in a non-blocking fashion and raise
    ``Job.NoResult`` if a result is not immediately available"."""
    job = await adder(mq.ApplicationDefinition).submit("test/123", x=3, y=7)
    job_id = job.id

    def script() -> Any:
        from balsam_mq.blocking import Job

        job = Job.objects.get(id=job_id)
        try:
            return job.result_nowait()
        except Job.NoResult:
            return "no result yet"

    async def coroutine() -> Any:
        from balsam_mq import Job

        job = await Job.objects.get(id=job_id)
        try:
            return job.result_nowait()
        except Job.NoResult:
            return "no result yet"

    assert await example.run(script, coroutine) == "no result yet"
    await drive([job_id], S.JOB_FINISHED, result=10)
    assert await example.run(script, coroutine) == 10


async def test_done_tells_whether_the_job_finished(
    example: Example, theta_gpu: Site, drive: Drive
) -> None:
    """ "``Job.done()`` polls the API and returns ``True`` if the Job is either in the
    ``JOB_FINISHED`` or ``FAILED`` state"."""
    ok, bad, running = await mq.Job.objects.bulk_create(
        [adder(mq.ApplicationDefinition).submit(f"t/{n}", x=n, y=n, save=False) for n in range(3)]
    )
    await drive([ok.id], S.JOB_FINISHED, result=0)
    await drive([bad.id], S.FAILED)
    await drive([running.id], S.RUNNING)
    job_ids = ids([ok, bad, running])

    def script() -> list[bool]:
        from balsam_mq.blocking import Job

        jobs = [Job.objects.get(id=i) for i in job_ids]
        return [job.done() for job in jobs]

    async def coroutine() -> list[bool]:
        from balsam_mq import Job

        jobs = [await Job.objects.get(id=i) for i in job_ids]
        return [await job.done() for job in jobs]

    assert await example.run(script, coroutine) == [True, True, False]


async def test_wait_sorts_done_from_not_done(
    example: Example, theta_gpu: Site, drive: Drive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wait_result = Job.objects.wait(active_jobs, return_when="FIRST_COMPLETED",
    timeout=60, poll_interval=10)`` ``print(f"{len(wait_result.done)} jobs completed")``
    ``print(f"{len(wait_result.not_done)} active jobs")``"""
    jobs = await mq.Job.objects.bulk_create(
        [adder(mq.ApplicationDefinition).submit(f"t/{n}", x=n, y=n, save=False) for n in range(3)]
    )
    await drive([jobs[1].id], S.JOB_FINISHED, result=2)
    job_ids = ids(jobs)

    def script() -> Any:
        from balsam_mq.blocking import Job

        active_jobs = list(Job.objects.filter(id=job_ids))
        wait_result = Job.objects.wait(
            active_jobs, return_when="FIRST_COMPLETED", timeout=60, poll_interval=10
        )
        print(f"{len(wait_result.done)} jobs completed")
        print(f"{len(wait_result.not_done)} active jobs")
        return wait_result

    async def coroutine() -> Any:
        from balsam_mq import Job

        active_jobs = await Job.objects.filter(id=job_ids)
        wait_result = await Job.objects.wait(
            active_jobs, return_when="FIRST_COMPLETED", timeout=60, poll_interval=10
        )
        print(f"{len(wait_result.done)} jobs completed")
        print(f"{len(wait_result.not_done)} active jobs")
        return wait_result

    capsys.readouterr()
    wait_result = await example.run(script, coroutine)
    assert capsys.readouterr().out == "1 jobs completed\n2 active jobs\n"
    assert ids(wait_result.done) == [jobs[1].id]
    assert ids(wait_result.not_done) == [jobs[0].id, jobs[2].id]


async def test_as_completed_yields_each_job_as_it_completes(
    example: Example, theta_gpu: Site, launcher: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``for job in Job.objects.as_completed(active_jobs, timeout=60):
    print(f"Job {job.workdir} returned:  {job.result()}")``"""

    def script() -> None:
        from balsam_mq.blocking import ApplicationDefinition, Job

        Adder = adder(ApplicationDefinition)
        active_jobs = Job.objects.bulk_create(
            [Adder.submit(f"test/{n}", x=n, y=10, save=False) for n in range(3)]
        )
        for job in Job.objects.as_completed(active_jobs, timeout=60):
            print(f"Job {job.workdir} returned:  {job.result()}")

    async def coroutine() -> None:
        from balsam_mq import ApplicationDefinition, Job

        Adder = adder(ApplicationDefinition)
        active_jobs = await Job.objects.bulk_create(
            [Adder.submit(f"test/{n}", x=n, y=10, save=False) for n in range(3)]
        )
        async for job in Job.objects.as_completed(active_jobs, timeout=60):
            print(f"Job {job.workdir} returned:  {await job.result()}")

    capsys.readouterr()
    await example.run(script, coroutine)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == [f"Job test/{n} returned:  {n + 10}" for n in range(3)]
