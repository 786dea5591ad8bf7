"""The launcher's writer of run outcomes: at once when idle, gathered longer under load
while runs are in flight."""

from __future__ import annotations

import asyncio

import pytest
from support.driving import drive_jobs
from support.waiting import until

from balsam_mq.domain import Actor, Change, Job, JobState
from balsam_mq.launcher import reporter as reporter_module
from balsam_mq.launcher.reporter import Reporter
from balsam_mq.store import Store

S = JobState


async def _running(store: Store, n: int) -> list[int]:
    jobs = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir=f"out/{i}") for i in range(n)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    await drive_jobs(store, ids, S.RUNNING)
    return ids


def _done(job_id: int) -> Change:
    return Change(job_id, S.RUNNING, S.RUN_DONE, by=Actor.LAUNCHER)


async def test_an_idle_reporter_commits_an_outcome_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "GATHER_S", 3600.0)  # no gathering when idle
    (job_id,) = await _running(store, 1)
    reporter = Reporter(store)
    task = asyncio.create_task(reporter.run())
    try:
        reporter.submit(_done(job_id))
        await asyncio.wait_for(reporter.flush(), 30)
        assert (reporter.commits, reporter.committed) == (1, 1)
        assert (await store.jobs.get(job_id)).state is S.RUN_DONE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_under_load_the_next_commit_gathers_the_outcomes_that_follow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "GATHER_S", 0.5)  # wide: the test's steps fit in it
    ids = await _running(store, 7)
    reporter = Reporter(store)
    reporter.submit(_done(ids[0]))
    reporter.submit(_done(ids[1]))
    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.sleep(0)  # the first commit, of two outcomes, is in flight
        reporter.submit(_done(ids[2]))  # gathered while it is
        # until the first commit is in (nothing announces it): well within GATHER_S of it
        await until(lambda: reporter.commits >= 1, timeout=30, interval=0.001)
        assert reporter.commits == 1
        for job_id in ids[3:]:  # after a commit of several: the next one waits for these
            reporter.submit(_done(job_id))
        await asyncio.wait_for(reporter.flush(), 30)
        assert (reporter.commits, reporter.committed) == (2, 7)
        assert {j.state for j in await store.jobs.get_many(ids)} == {S.RUN_DONE}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_under_load_the_last_outcomes_are_committed_once_no_run_is_left(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "GATHER_S", 3600.0)  # only the last run ends the wait
    ids = await _running(store, 4)
    in_flight = set(ids)
    reporter = Reporter(store, more_coming=lambda: bool(in_flight))

    def finish(job_id: int) -> None:
        in_flight.discard(job_id)
        reporter.submit(_done(job_id))

    finish(ids[0])
    finish(ids[1])
    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.sleep(0)  # the first commit, of two outcomes, is in flight
        finish(ids[2])  # gathered while it is, and then while ids[3] runs
        await until(lambda: reporter.commits >= 1, timeout=30, interval=0.001)
        finish(ids[3])  # the last run: its outcome and the one gathered go at once
        await asyncio.wait_for(reporter.flush(), 30)
        assert (reporter.commits, reporter.committed) == (2, 4)
        assert {j.state for j in await store.jobs.get_many(ids)} == {S.RUN_DONE}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
