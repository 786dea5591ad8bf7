"""The blocking facade: the same API without await, for code running in a thread with no
event loop (here: worker threads of the test, like a script or a hook body)."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from balsam_mq import blocking
from balsam_mq.domain import JobState
from balsam_mq.errors import JobError, NotFound
from balsam_mq.settings import Settings
from balsam_mq.store import Store

S = JobState
Drive = Any


def define() -> type[blocking.ApplicationDefinition]:
    class Adder(blocking.ApplicationDefinition):
        site = "polaris"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    return Adder


def script_submit(settings: Settings) -> list[int]:
    with blocking.connect(settings) as client:
        blocking.Site.objects.create(name="polaris")
        Adder = define()
        Adder.sync()
        job = Adder.submit("test/5plus5", x=5, y=5)
        more = blocking.Job.objects.bulk_create(
            [Adder.submit(f"t/{i}", x=i, y=1, save=False) for i in range(3)]
        )
        assert client.settings.db == settings.db
        assert isinstance(job, blocking.Job) and job.state == S.PREPROCESSED
        return [j.id for j in [job, *more] if j.id is not None]


def script_collect(settings: Settings, job_ids: list[int]) -> dict[str, Any]:
    with blocking.connect(settings):
        jobs = list(blocking.Job.objects.filter(id=job_ids).order_by("id"))
        first = jobs[0].result(timeout=30)
        finished = [j.id for j in blocking.Job.objects.as_completed(jobs[1:], timeout=30)]
        done, not_done = blocking.Job.objects.wait(jobs, timeout=5)
        jobs[0].data = {"checked": True}
        jobs[0].save()
        jobs[0].refresh()
        loaded = blocking.ApplicationDefinition.load_by_site("polaris")["Adder"]
        again = loaded.submit("again", x=1, y=1)
        return {
            "first": first,
            "finished": sorted(finished),
            "done": len(done),
            "not_done": len(not_done),
            "data": jobs[0].data,
            "count": blocking.Job.objects.filter(state="JOB_FINISHED").count(),
            "again": again.state,
            "done?": jobs[0].done(),
            "sites": [s.name for s in blocking.Site.objects.all()],
        }


async def test_a_script_without_an_event_loop(
    settings: Settings, store: Store, topology: object, relay: object, drive: Drive
) -> None:
    ids = await anyio.to_thread.run_sync(script_submit, settings)
    await drive(ids, S.JOB_FINISHED, result=10)
    out = await anyio.to_thread.run_sync(functools.partial(script_collect, settings, ids))
    assert out == {
        "first": 10,
        "finished": ids[1:],
        "done": 4,
        "not_done": 0,
        "data": {"checked": True},
        "count": 4,
        "again": S.PREPROCESSED,
        "done?": True,
        "sites": ["polaris"],
    }


def script_errors(settings: Settings) -> None:
    with blocking.connect(settings):
        with pytest.raises(NotFound):
            blocking.Job.objects.get(id=12345)
        with pytest.raises(TypeError, match=r"use query\.count"):
            len(blocking.Job.objects.all())


async def test_errors_come_through_unchanged(
    settings: Settings, store: Store, topology: object
) -> None:
    await anyio.to_thread.run_sync(script_errors, settings)


def script_bad_values(settings: Settings) -> int:
    with blocking.connect(settings):
        blocking.Site.objects.create(name="polaris")
        Adder = define()
        Adder.sync()
        with pytest.raises(JobError, match=r"^Job 'w/1': tags must be a mapping of str to str"):
            Adder.submit("w/1", x=1, y=2, tags=["a"])
        with pytest.raises(JobError, match=r"^Job 'w/1': data\['s'\] is a set"):
            Adder.submit("w/1", x=1, y=2, data={"s": {1, 2}})
        with pytest.raises(JobError, match=r"^Job 'w/1': field 'num_nodes': expected an integer"):
            Adder.submit("w/1", x=1, y=2, num_nodes="2")
        job = Adder.submit("w/2", x=1, y=2)
        with pytest.raises(JobError, match=rf"^Job {job.id}: field 'wall_time_min': expected"):
            job.wall_time_min = "5"
        job.data["s"] = {1}
        with pytest.raises(JobError, match=rf"^Job {job.id}: data\['s'\] is a set"):
            job.save()
        return blocking.Job.objects.count()


async def test_the_blocking_facade_refuses_bad_values_alike(
    settings: Settings, store: Store, topology: object
) -> None:
    assert await anyio.to_thread.run_sync(script_bad_values, settings) == 1
