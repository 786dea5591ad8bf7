"""The retry limit: a run's failure or timeout restarts a job at most its max_retries (its
own, else its app's) times, then fails it saying why; a user's restart gives the job its
retries back."""

from __future__ import annotations

from balsam_mq.domain import Actor, App, Change, Job, JobState
from balsam_mq.domain.pipeline import retry_wait_s
from balsam_mq.store import Store

S = JobState


async def _job(
    store: Store, max_retries: int, hooks: list[str], own_limit: int | None = None
) -> int:
    app = await store.apps.upsert(
        App(site_id=1, name="Flaky", command_template="flaky", max_retries=max_retries, hooks=hooks)
    )
    new = Job(app_id=app.id or 0, site_id=1, workdir="f/1", max_retries=own_limit)
    (job,) = await store.jobs.create_many([new])
    assert job.id is not None
    return job.id


async def _fail_a_run(store: Store, job_id: int, end: JobState = S.RUN_ERROR) -> None:
    state = (await store.jobs.get(job_id)).state
    by = Actor.LAUNCHER
    await store.jobs.transition([Change(job_id, state, S.RUNNING, by=by)])
    await store.jobs.transition([Change(job_id, S.RUNNING, end, by=by)])


async def test_a_hook_restarting_every_failed_run_is_stopped_at_the_limit(store: Store) -> None:
    job_id = await _job(store, max_retries=2, hooks=["handle_error"])
    for restarts in (1, 2):
        await _fail_a_run(store, job_id)
        await store.jobs.transition([Change(job_id, S.RUN_ERROR, S.RESTART_READY, by=Actor.ERROR)])
        job = await store.jobs.get(job_id)
        assert (job.state, job.restarts) == (S.RESTART_READY, restarts)
    await _fail_a_run(store, job_id)
    result = await store.jobs.transition(
        [Change(job_id, S.RUN_ERROR, S.RESTART_READY, {"why": "try again"}, by=Actor.ERROR)]
    )
    assert result.final == {job_id: S.FAILED}
    job = await store.jobs.get(job_id)
    assert job.state is S.FAILED and job.restarts == 2
    assert job.state_data["reason"] == (
        "restarted 2 times already, the most allowed (max_retries=2); "
        "it would have restarted after RUN_ERROR"
    )
    assert job.state_data["last_restart"] == {"why": "try again"}
    last = (await store.events.for_job(job_id))[-1]
    assert (last.from_state, last.to_state, last.by) == ("RUN_ERROR", "FAILED", Actor.ERROR)

    # the user restarts it: its retries are given back
    await store.jobs.transition([Change(job_id, S.FAILED, S.RESTART_READY, by=Actor.USER)])
    assert (await store.jobs.get(job_id)).restarts == 0
    await _fail_a_run(store, job_id)
    await store.jobs.transition([Change(job_id, S.RUN_ERROR, S.RESTART_READY, by=Actor.ERROR)])
    assert (await store.jobs.get(job_id)).restarts == 1


async def test_timeouts_restart_by_default_and_count_too(store: Store) -> None:
    job_id = await _job(store, max_retries=1, hooks=[])  # the default handle_timeout
    await _fail_a_run(store, job_id, S.RUN_TIMEOUT)  # passed through to RESTART_READY
    job = await store.jobs.get(job_id)
    assert (job.state, job.restarts) == (S.RESTART_READY, 1)
    await _fail_a_run(store, job_id, S.RUN_TIMEOUT)
    job = await store.jobs.get(job_id)
    assert job.state is S.FAILED and "max_retries=1" in job.state_data["reason"]
    # a launcher giving back a job it claimed ahead is no retry
    job_id = await _job(store, max_retries=0, hooks=[])
    await store.jobs.transition([Change(job_id, S.PREPROCESSED, S.RUNNING, by=Actor.LAUNCHER)])
    await store.jobs.transition([Change(job_id, S.RUNNING, S.RESTART_READY, by=Actor.LAUNCHER)])
    job = await store.jobs.get(job_id)
    assert (job.state, job.restarts) == (S.RESTART_READY, 0)


async def test_a_jobs_own_limit_overrides_its_apps(store: Store) -> None:
    job_id = await _job(store, max_retries=5, hooks=[], own_limit=0)
    await _fail_a_run(store, job_id, S.RUN_TIMEOUT)
    job = await store.jobs.get(job_id)
    assert job.state is S.FAILED and "max_retries=0" in job.state_data["reason"]
    generous = await _job(store, max_retries=0, hooks=[], own_limit=2)
    await _fail_a_run(store, generous, S.RUN_TIMEOUT)
    assert (await store.jobs.get(generous)).state is S.RESTART_READY


def test_backoff_doubles_and_is_bounded() -> None:
    assert [retry_wait_s(n, 1.0) for n in range(5)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert retry_wait_s(30, 1.0) == 3600.0
    assert retry_wait_s(3, 0.0) == 0.0
