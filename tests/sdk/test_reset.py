"""Resetting and killing jobs through the SDK, alike in memory, directly and through a gateway:
a reset job runs again from READY and passes its parents' check again; a kill fails what
has not finished and leaves the rest."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from balsam_mq import ApplicationDefinition, EventLog, Job, blocking
from balsam_mq.domain import JobState
from balsam_mq.errors import JobFailed, NoResult, QueryError
from balsam_mq.sdk import Client, Site
from balsam_mq.settings import Settings

S = JobState
Either = tuple[Client, Site, Any]


class Adder(ApplicationDefinition):
    site = "polaris"

    def run(self, x: int) -> int:
        return x + 1


class Staged(ApplicationDefinition):
    """Has its own preprocess: a reset job waits in STAGED_IN for the site agent."""

    site = "polaris"

    def preprocess(self) -> None:
        self.job.state = "PREPROCESSED"

    def run(self) -> None:
        pass


async def history(job_id: int) -> list[tuple[str | None, str, str | None]]:
    events = await EventLog.objects.filter(job_id=job_id).order_by("seq")
    return [(e.from_state, e.to_state, e.by) for e in events]


async def test_a_reset_job_runs_again_from_ready_without_its_last_run(either: Either) -> None:
    _, _, drive = either
    failed = await Adder.submit("a/failed", x=1)
    done = await Adder.submit("a/done", x=2)
    staged = await Staged.submit("a/staged")
    await drive([failed.id], S.FAILED, exception=ValueError("bad"), return_code=3)
    await drive([done.id], S.JOB_FINISHED, result=3)
    await drive([staged.id], S.JOB_FINISHED)
    await failed.refresh()
    assert isinstance(failed.exception_nowait(), ValueError) and failed.return_code == 3

    assert await failed.reset() is True
    assert failed.state is S.PREPROCESSED and failed.return_code is None
    assert failed.state_data == {}
    with pytest.raises(NoResult):
        failed.exception_nowait()  # what the last run left is gone
    assert (await history(failed.id))[-3:] == [
        ("FAILED", "READY", "user"),
        ("READY", "STAGED_IN", "stage_in"),  # stage-in and preprocess again (no work)
        ("STAGED_IN", "PREPROCESSED", "preprocess"),
    ]
    last_reset = (
        await EventLog.objects.filter(job_id=failed.id, to_state="READY").order_by("-seq").first()
    )
    assert last_reset is not None and last_reset.state_data == {"reason": "reset by the user"}

    reset = await Job.objects.filter(id=[done.id, staged.id, failed.id]).reset()
    assert reset.moved == {
        done.id: (S.JOB_FINISHED, S.PREPROCESSED),
        staged.id: (S.JOB_FINISHED, S.STAGED_IN),  # its preprocess hook runs again
    }
    assert reset.left == {failed.id: S.PREPROCESSED}
    await done.refresh()
    with pytest.raises(NoResult):
        done.result_nowait()
    assert await done.reset() is False  # not FAILED or JOB_FINISHED: left alone


async def test_a_reset_child_waits_for_or_fails_with_its_parents(either: Either) -> None:
    _, _, drive = either
    root = await Adder.submit("d/root", x=0)
    await drive([root.id], S.FAILED)
    child = await Adder.submit("d/child", x=1, parent_ids=[root.id])
    grandchild = await Adder.submit("d/grandchild", x=2, parent_ids=[child.id])
    assert (child.state, grandchild.state) == (S.FAILED, S.FAILED)  # created under a failure

    assert await child.reset() is True  # alone: its parent is still FAILED
    assert child.state is S.FAILED
    assert child.state_data == {
        "reason": f"parent job {root.id} failed",
        "failed_parent": root.id,
        "failed_ancestor": root.id,
    }
    assert (await history(child.id))[-2:] == [
        ("FAILED", "AWAITING_PARENTS", "user"),
        ("AWAITING_PARENTS", "FAILED", "resolver"),
    ]

    reset = await Job.objects.filter(id=root.id).reset(descendants=True)
    assert reset.moved == {
        root.id: (S.FAILED, S.PREPROCESSED),
        child.id: (S.FAILED, S.AWAITING_PARENTS),
        grandchild.id: (S.FAILED, S.AWAITING_PARENTS),
    }
    # the parents now wait for: their end is routed to the dependency resolver
    await drive([root.id], S.JOB_FINISHED)
    (finish,) = await EventLog.objects.filter(job_id=root.id, to_state="JOB_FINISHED")
    assert finish.quiet is False

    # a child reset under an unfinished parent waits for it
    runner = await Adder.submit("d/runner", x=3)
    await drive([runner.id], S.RUNNING)
    waiting = await Adder.submit("d/waiting", x=4, parent_ids=[runner.id])
    assert await waiting.kill() is True
    assert await waiting.reset() is True and waiting.state is S.AWAITING_PARENTS


async def test_kill_fails_what_has_not_finished_and_leaves_the_rest(either: Either) -> None:
    _, _, drive = either
    queued, running, done = [await Adder.submit(f"k/{i}", x=i) for i in range(3)]
    await drive([running.id], S.RUNNING)
    await drive([done.id], S.JOB_FINISHED)
    killed = await Job.objects.filter(id=[queued.id, running.id, done.id]).kill()
    assert killed.moved == {
        queued.id: (S.PREPROCESSED, S.FAILED),
        running.id: (S.RUNNING, S.FAILED),
    }
    assert killed.was(S.RUNNING) == [running.id] and killed.left == {done.id: S.JOB_FINISHED}
    await running.refresh()
    with pytest.raises(JobFailed, match="killed by the user"):
        running.result_nowait()
    assert await done.kill() is False and done.state is S.JOB_FINISHED
    with pytest.raises(QueryError, match="only jobs can be killed"):
        await Site.objects.all().kill()


async def test_deleting_a_running_job_kills_it_first(either: Either) -> None:
    _, _, drive = either
    running, other = [await Adder.submit(f"r/{i}", x=i) for i in range(2)]
    await drive([running.id], S.RUNNING)
    assert await Job.objects.filter(state="RUNNING").delete() == 1  # the filter no longer holds
    (killed,) = await EventLog.objects.filter(job_id=running.id, to_state="FAILED")
    assert killed.state_data == {"reason": "killed by the user: the job was deleted"}
    assert [j.id async for j in Job.objects.all()] == [other.id]


async def test_a_job_claimed_while_it_is_deleted_is_killed_not_left_running(
    either: Either,
) -> None:
    client, _, drive = either
    jobs = [await Adder.submit(f"c/{i}", x=i) for i in range(3)]
    claimed = jobs[1]
    backend = client.backend
    delete = backend.delete
    calls = 0

    async def claimed_just_before_the_delete(spec: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # a launcher claims one of the matches as the deletion is sent
            await drive([claimed.id], S.RUNNING)
        return await delete(spec)

    backend.delete = claimed_just_before_the_delete  # type: ignore[method-assign]
    try:
        assert await Job.objects.filter(workdir__contains="c/").delete() == 3
    finally:
        del backend.delete
    assert await Job.objects.count() == 0
    (killed,) = await EventLog.objects.filter(job_id=claimed.id, to_state="FAILED")
    assert (killed.from_state, killed.state_data["reason"]) == (
        "RUNNING",
        "killed by the user: the job was deleted",
    )


def blocking_steering(settings: Settings, job_id: int) -> list[Any]:
    with blocking.connect(settings):
        job = blocking.Job.objects.get(id=job_id)
        killed = job.kill()
        reset = blocking.Job.objects.filter(id=job_id).reset()
        job.refresh()
        return [killed, sorted(reset.moved), job.state, job.reset()]


@pytest.mark.direct_only
async def test_the_blocking_twins(client: Client, site: Site, settings: Settings) -> None:
    job = await Adder.submit("b/1", x=1)
    outcome = await anyio.to_thread.run_sync(functools.partial(blocking_steering, settings, job.id))
    assert outcome == [True, [job.id], S.PREPROCESSED, False]
