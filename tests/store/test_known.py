"""Transitions on what their callers know of the jobs: no read while the jobs are as
known, a read and a fresh decision as soon as one has changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.commands import Commands

from balsam_mq.domain import Actor, App, Change, Job, JobState
from balsam_mq.settings import Settings
from balsam_mq.store import Store, open_store
from balsam_mq.store.known import KNOWN_MAX

S = JobState
TRANSACTION = ["update jobs", "insert events", "commitTransaction 1"]


@pytest.fixture
async def watched(settings: Settings, store: Store) -> AsyncIterator[tuple[Store, Commands]]:
    commands = Commands()
    async with open_store(settings.mongodb_url, settings.db, listeners=[commands]) as st:
        yield st, commands


async def _runnable(store: Store) -> tuple[int, dict[int, App], dict[str, Any]]:
    """A job of an app with default hooks, created PREPROCESSED as the SDK makes it, and
    what a launcher knows of it once it read it."""
    app = await store.apps.upsert(App(site_id=1, name="Known", hooks=[]))
    assert app.id is not None
    (job,) = await store.jobs.create_many([Job(app_id=app.id, site_id=1, workdir="k")])
    assert job.id is not None and job.state == S.PREPROCESSED
    known: dict[int, dict[str, Any]] = {}
    await store.jobs.get_many([job.id], known=known)
    return job.id, {app.id: app}, known[job.id]


def _claim(job_id: int, session_id: int, known: Any = None) -> Change:
    fields = {"session_id": session_id}
    return Change(job_id, S.PREPROCESSED, S.RUNNING, fields=fields, by=Actor.LAUNCHER, known=known)


def _done(job_id: int, session_id: int, known: Any) -> Change:
    return Change(job_id, S.RUNNING, S.RUN_DONE, by=Actor.LAUNCHER, held_by=session_id, known=known)


async def test_a_claim_and_an_outcome_on_known_jobs_read_nothing(
    watched: tuple[Store, Commands],
) -> None:
    store, commands = watched
    job_id, apps, known = await _runnable(store)
    commands.sent.clear()
    claimed = await store.jobs.transition([_claim(job_id, 5, known)])
    assert claimed.moved == [job_id]
    assert commands.sent == TRANSACTION
    assert claimed.after[job_id]["state"] == S.RUNNING and claimed.after[job_id]["session_id"] == 5

    commands.sent.clear()
    ended = await store.jobs.transition([_done(job_id, 5, claimed.after[job_id])], apps=apps)
    assert commands.sent == TRANSACTION
    assert ended.final == {job_id: S.JOB_FINISHED}
    job = await store.jobs.get(job_id)
    history = [e async for e in store.events.iterate(job_id=job_id)]
    assert [e.seq for e in history] == list(range(1, job.seq + 1))  # every step, in order
    assert [e.to_state for e in history][3:5] == ["RUNNING", "RUN_DONE"]
    assert job.state == history[-1].to_state == S.JOB_FINISHED


async def test_a_job_claimed_since_it_was_read_is_not_claimed_again(
    watched: tuple[Store, Commands],
) -> None:
    store, commands = watched
    job_id, _, known = await _runnable(store)
    first = await store.jobs.transition([_claim(job_id, 1)])  # another launcher, first
    assert first.moved == [job_id]

    commands.sent.clear()
    late = await store.jobs.transition([_claim(job_id, 2, known)])
    assert late.moved == [] and late.unmoved == {job_id: S.RUNNING}
    assert "find jobs" in commands.sent  # decided again on what the job is now
    job = await store.jobs.get(job_id)
    assert job.session_id == 1
    assert await store.events.count(job_id=job_id, to_state="RUNNING") == 1


async def test_an_outcome_sees_children_created_since_its_claim(store: Store) -> None:
    job_id, apps, _ = await _runnable(store)
    claimed = await store.jobs.transition([_claim(job_id, 3)])
    # a child created while the job runs marks it as awaited, with no transition of its own
    (child,) = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir="child", parent_ids=[job_id])]
    )
    assert child.state == S.AWAITING_PARENTS

    ended = await store.jobs.transition([_done(job_id, 3, claimed.after[job_id])], apps=apps)
    assert ended.final == {job_id: S.JOB_FINISHED}
    finished = [e async for e in store.events.iterate(job_id=job_id, to_state="JOB_FINISHED")]
    assert [e.quiet for e in finished] == [False]  # announced to the dependency resolver


async def test_a_large_batch_is_read_even_when_known(watched: tuple[Store, Commands]) -> None:
    store, commands = watched
    app = await store.apps.upsert(App(site_id=1, name="Many", hooks=[]))
    jobs = await store.jobs.create_many(
        [Job(app_id=app.id, site_id=1, workdir=f"m/{i}") for i in range(KNOWN_MAX + 1)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    known: dict[int, dict[str, Any]] = {}
    await store.jobs.get_many(ids, known=known)
    commands.sent.clear()
    claimed = await store.jobs.transition([_claim(i, 4, known[i]) for i in ids])
    assert claimed.moved == ids
    assert commands.sent == ["find jobs", *TRANSACTION]
