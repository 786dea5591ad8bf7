"""Job entries set one by one in bulk updates, plain-data views of jobs, exceptions as values,
and the user's view of an illegal transition."""

from __future__ import annotations

from typing import Any

import pytest

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.errors import InvalidTransition, JobError, JobFailed, NoResult, QueryError
from balsam_mq.sdk import Client, Site

S = JobState
Drive = Any


class Sim(ApplicationDefinition):
    site = "polaris"

    def run(self, n: int) -> int:
        return n


async def two_jobs() -> list[Job]:
    jobs = [
        Sim.submit(f"s/{i}", n=i, tags={"run": "H2O"}, data={"k": i}, save=False) for i in (0, 1)
    ]
    return await Job.objects.bulk_create(jobs)


async def test_update_sets_single_entries_of_tags_and_data(
    memory: Client, memory_site: Site
) -> None:
    jobs = await two_jobs()
    query = Job.objects.filter(id=[j.id for j in jobs])
    assert await query.update(**{"tags.retry": "1", "data.note": {"by": "hand"}}) == 2
    assert await query.update(state="FAILED", **{"tags.why": "test"}) == 2
    await Job.objects.refresh(jobs)
    assert jobs[1].tags == {"run": "H2O", "retry": "1", "why": "test"}
    assert jobs[1].data == {"k": 1, "note": {"by": "hand"}}
    assert jobs[1].state == S.FAILED


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"tags.": "x"}, QueryError, "an entry key is one word"),
        ({"data.a.b": 1}, QueryError, "an entry key is one word"),
        ({"tags.$x": "1"}, QueryError, "an entry key is one word"),
        ({"tags": {}, "tags.x": "1"}, QueryError, "cannot be set together"),
        ({"tags.x": 1}, JobError, "tags must map str to str"),
        ({"params.x": 1}, QueryError, "field 'params.x' cannot be updated; fields: "),
        ({"state": "DONE"}, QueryError, "unknown job state 'DONE'; expected one of: CREATED"),
    ],
)
async def test_update_refuses_bad_entries(
    memory: Client,
    memory_site: Site,
    fields: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    await two_jobs()
    with pytest.raises(error, match=message.replace("$", r"\$")):
        await Job.objects.all().update(**fields)


async def test_illegal_user_transition_says_what_is_allowed(
    memory: Client, memory_site: Site, drive: object
) -> None:
    jobs = await two_jobs()
    with pytest.raises(InvalidTransition) as info:
        await Job.objects.filter(id=jobs[0].id).update(state="RUN_DONE")
    assert str(info.value) == (
        "Job 1: transition PREPROCESSED -> RUN_DONE by user is not allowed; "
        "a user may move a PREPROCESSED job to FAILED"
    )


async def test_to_dict_and_exception_nowait(
    memory: Client, memory_site: Site, memory_drive: Drive
) -> None:
    jobs = await two_jobs()
    doc = jobs[0].to_dict()
    assert doc["parameters"] == {"n": 0} and doc["state"] == "PREPROCESSED"
    assert doc["tags"] == {"run": "H2O"} and doc["num_nodes"] == 1
    assert set(doc) >= {"id", "site_id", "app_id", "workdir", "created_at", "last_update"}
    with pytest.raises(NoResult):
        jobs[0].exception_nowait()
    await memory_drive([jobs[0].id], S.JOB_FINISHED, result=5)
    await memory_drive([jobs[1].id], S.FAILED, exception=KeyError("lost"))
    await Job.objects.refresh(jobs)
    assert jobs[0].exception_nowait() is None
    exc = jobs[1].exception_nowait()
    assert isinstance(exc, KeyError) and exc.args == ("lost",)
    (plain,) = await Job.objects.bulk_create([Sim.submit("s/2", n=2, save=False)])
    await Job.objects.filter(id=plain.id).update(state="FAILED", state_data={"why": "x"})
    await plain.refresh()
    failed = plain.exception_nowait()
    assert isinstance(failed, JobFailed) and failed.state_data == {"why": "x"}


async def test_jobs_built_alike_share_no_field_a_change_could_leak_through(
    memory: Client, memory_site: Site
) -> None:
    unsaved = [Sim.submit(f"s/{i}", n=i, num_nodes=2, save=False) for i in (0, 1)]
    unsaved[0].launch_params["cpu_bind"] = "depth"
    unsaved[0].num_nodes = 4
    assert unsaved[1].launch_params == {} and unsaved[1].num_nodes == 2
    jobs = await Job.objects.bulk_create(unsaved)
    jobs[1].launch_params["cpu_bind"] = "core"
    jobs[1].tags["k"] = "v"
    assert jobs[0].launch_params == {"cpu_bind": "depth"} and jobs[0].tags == {}
    await jobs[1].save()
    await Job.objects.refresh(jobs)
    assert [j.num_nodes for j in jobs] == [4, 2]
    assert [j.launch_params for j in jobs] == [{"cpu_bind": "depth"}, {"cpu_bind": "core"}]
    with pytest.raises(AttributeError, match="Job 2: app_id cannot be changed"):
        jobs[1].app_id = 7


async def test_a_job_may_carry_its_own_retry_limit_and_backoff(
    either: tuple[Client, Site, Drive],
) -> None:
    strict = await Sim.submit("s/strict", n=1, max_retries=0, retry_backoff_s=0.5)
    lenient = await Sim.submit("s/lenient", n=2)
    assert (strict.max_retries, strict.retry_backoff_s) == (0, 0.5)
    assert (lenient.max_retries, lenient.retry_backoff_s) == (None, None)  # the app's
    with pytest.raises(JobError, match="max_retries"):
        Sim.submit("s/bad", n=1, max_retries=-1, save=False)
    lenient.max_retries = 3
    await lenient.save()
    assert (await Job.objects.get(id=lenient.id)).max_retries == 3


async def test_in_memory_a_jobs_own_retry_limit_counts(
    memory: Client, memory_site: Site, memory_drive: Drive
) -> None:
    strict = await Sim.submit("s/strict", n=1, max_retries=0)
    lenient = await Sim.submit("s/lenient", n=2)  # the app's limit, 5
    await memory_drive([strict.id, lenient.id], S.RUNNING)
    timed_out = [
        Change(j.id, S.RUNNING, S.RUN_TIMEOUT, by=Actor.LAUNCHER) for j in (strict, lenient)
    ]
    await memory.backend.transition_jobs(timed_out)  # the default handle_timeout restarts
    await Job.objects.refresh([strict, lenient])
    assert strict.state is S.FAILED and "max_retries=0" in strict.state_data["reason"]
    assert (lenient.state, lenient.restarts) == (S.RESTART_READY, 1)
