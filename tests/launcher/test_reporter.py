"""The launcher's writer of run outcomes: at once when idle, gathered longer under load
while runs are in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

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


@contextlib.asynccontextmanager
async def _running_reporter(reporter: Reporter) -> AsyncIterator[None]:
    task = asyncio.create_task(reporter.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _committed(store: Store, reporter: Reporter, ids: list[int]) -> tuple[int, int]:
    """(commits, outcomes committed) once every outcome submitted is in; all RUN_DONE."""
    await asyncio.wait_for(reporter.flush(), 30)
    assert {j.state for j in await store.jobs.get_many(ids)} == {S.RUN_DONE}
    return reporter.commits, reporter.committed


async def test_an_idle_reporter_commits_an_outcome_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "GATHER_S", 3600.0)  # no gathering when idle
    (job_id,) = await _running(store, 1)
    reporter = Reporter(store)
    async with _running_reporter(reporter):
        reporter.submit(_done(job_id))
        assert await _committed(store, reporter, [job_id]) == (1, 1)


async def test_under_load_the_next_commit_gathers_the_outcomes_that_follow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "GATHER_S", 0.5)  # wide: the test's steps fit in it
    ids = await _running(store, 7)
    reporter = Reporter(store)
    reporter.submit(_done(ids[0]))
    reporter.submit(_done(ids[1]))
    async with _running_reporter(reporter):
        await asyncio.sleep(0)  # the first commit, of two outcomes, is in flight
        reporter.submit(_done(ids[2]))  # gathered while it is
        # until the first commit is in (nothing announces it): well within GATHER_S of it
        await until(lambda: reporter.commits >= 1, timeout=30, interval=0.001)
        assert reporter.commits == 1
        for job_id in ids[3:]:  # after a commit of several: the next one waits for these
            reporter.submit(_done(job_id))
        assert await _committed(store, reporter, ids) == (2, 7)


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
    async with _running_reporter(reporter):
        await asyncio.sleep(0)  # the first commit, of two outcomes, is in flight
        finish(ids[2])  # gathered while it is, and then while ids[3] runs
        await until(lambda: reporter.commits >= 1, timeout=30, interval=0.001)
        finish(ids[3])  # the last run: its outcome and the one gathered go at once
        assert await _committed(store, reporter, ids) == (2, 4)
