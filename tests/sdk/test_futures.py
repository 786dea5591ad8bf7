"""Jobs as futures: result(), result_nowait(), done(), wait() and as_completed(), all waiting on
events (a relay runs) and all seeing jobs that finished before they subscribed."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import JobState
from balsam_mq.errors import JobFailed
from balsam_mq.sdk import Client, Site

S = JobState
Drive = Any


def adder() -> type[ApplicationDefinition]:
    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    return Adder


async def submit(n: int) -> list[Job]:
    Adder = adder()
    return await Job.objects.bulk_create(
        [Adder.submit(f"add/{i}", x=i, y=1, save=False) for i in range(n)]
    )


async def test_result_waits_for_the_run_value(
    client: Client, site: Site, relay: object, drive: Drive
) -> None:
    (job,) = await submit(1)
    with pytest.raises(Job.NoResult, match="is PREPROCESSED: no result yet"):
        job.result_nowait()
    assert not await job.done()
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(drive, [job.id], S.JOB_FINISHED, result=1))
        assert await job.result(timeout=30) == 1
    assert job.state == S.JOB_FINISHED and await job.done()
    assert job.result_nowait() == 1


async def test_a_finished_job_is_seen_without_any_event(
    memory: Client, memory_site: Site, memory_drive: Drive
) -> None:
    """No relay runs here: the re-check after subscribing finds the job already final."""
    (job,) = await submit(1)
    await memory_drive([job.id], S.JOB_FINISHED, result={"answer": 42})
    assert await job.result(timeout=5) == {"answer": 42}


async def test_run_exception_is_raised_again_with_its_traceback(
    memory: Client, memory_site: Site, memory_drive: Drive
) -> None:
    (job,) = await submit(1)

    def compute() -> None:
        raise ZeroDivisionError("x / 0 on the compute node")

    try:
        compute()
    except ZeroDivisionError as exc:
        error = exc
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(memory_drive, [job.id], S.FAILED, exception=error))
        with pytest.raises(ZeroDivisionError, match="x / 0 on the compute node") as info:
            await job.result(timeout=30)
    assert "in compute" in info.value.remote_traceback  # type: ignore[attr-defined]
    assert "Traceback where the job ran" in info.value.__notes__[0]


async def test_a_failure_without_an_exception_names_the_job(
    memory: Client, memory_site: Site, memory_drive: Drive
) -> None:
    (job,) = await submit(1)
    await memory_drive([job.id], S.FAILED, return_code=3)
    with pytest.raises(JobFailed, match=rf"Job {job.id} FAILED"):
        await job.result(timeout=5)


async def test_result_times_out(memory: Client, memory_site: Site) -> None:
    (job,) = await submit(1)
    with pytest.raises(TimeoutError, match=rf"Job {job.id} did not finish within 0.2 s"):
        await job.result(timeout=0.2)


async def test_wait(memory: Client, memory_site: Site, memory_drive: Drive) -> None:
    jobs = await submit(4)
    await memory_drive([jobs[0].id], S.JOB_FINISHED, result=1)
    done, not_done = await Job.objects.wait(jobs, timeout=0.2)
    assert (done, not_done) == ([jobs[0]], jobs[1:])
    done, not_done = await Job.objects.wait(jobs, return_when="FIRST_COMPLETED")
    assert done == [jobs[0]]
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(memory_drive, [jobs[1].id], S.FAILED))
        done, not_done = await Job.objects.wait(jobs[1:], return_when="FIRST_EXCEPTION")
    assert done == [jobs[1]] and jobs[1].state == S.FAILED
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(memory_drive, [jobs[2].id, jobs[3].id], S.JOB_FINISHED))
        done, not_done = await Job.objects.wait(jobs, timeout=30)
    assert done == jobs and not_done == []


async def test_as_completed_over_200_jobs(
    client: Client, site: Site, relay: object, drive: Drive
) -> None:
    jobs = await submit(200)
    early, late = jobs[:100], jobs[100:]
    await drive([j.id for j in early], S.JOB_FINISHED, result=0)  # before anyone subscribes
    seen: list[Job] = []
    async with anyio.create_task_group() as tg:

        async def finish_late() -> None:
            for start in range(0, 100, 25):  # in a few waves, while the client listens
                await drive([j.id for j in late[start : start + 25]], S.JOB_FINISHED, result=1)

        async for job in Job.objects.as_completed(jobs, timeout=60):
            seen.append(job)
            if len(seen) == 100:
                tg.start_soon(finish_late)
    assert sorted(j.id for j in seen) == sorted(j.id for j in jobs)  # type: ignore[type-var]
    assert all(j.state == S.JOB_FINISHED for j in jobs)
    assert {j.id for j in seen[:100]} == {j.id for j in early}


async def test_as_completed_times_out(memory: Client, memory_site: Site) -> None:
    jobs = await submit(2)
    with pytest.raises(TimeoutError, match=r"2 of 2 jobs unfinished after 0\.2 s"):
        async for _ in Job.objects.as_completed(jobs, timeout=0.2):
            pass
