"""The conditional transition: legal moves, refused moves, and concurrent claimers."""

from __future__ import annotations

import asyncio
import random

import pytest

from balsam_mq.domain import TRANSITIONS, Actor, Change, Job, JobState
from balsam_mq.errors import InvalidTransition
from balsam_mq.settings import Settings
from balsam_mq.store import Store, open_store

LEGAL = [(f, t) for f, tos in TRANSITIONS.items() for t in tos]
ILLEGAL = [
    (JobState.READY, JobState.RUNNING),
    (JobState.CREATED, JobState.JOB_FINISHED),
    (JobState.JOB_FINISHED, JobState.PREPROCESSED),
    (JobState.JOB_FINISHED, JobState.RESTART_READY),
    (JobState.FAILED, JobState.JOB_FINISHED),
    (JobState.PREPROCESSED, JobState.RUN_DONE),
    (JobState.RUN_DONE, JobState.RUNNING),
    (JobState.STAGED_IN, JobState.STAGED_OUT),
    (JobState.AWAITING_PARENTS, JobState.RUNNING),
    (JobState.RUNNING, JobState.POSTPROCESSED),
]


async def _jobs_in(store: Store, state: JobState, n: int, site_id: int = 1) -> list[int]:
    jobs = await store.jobs.create_many(
        [Job(app_id=1, site_id=site_id, workdir=f"w/{i}") for i in range(n)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    # place the jobs directly in the starting state under test
    await store.db["jobs"].update_many({"_id": {"$in": ids}}, {"$set": {"state": state.value}})
    return ids


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{f}->{t}" for f, t in LEGAL])
async def test_every_legal_transition_moves_and_records_one_event(
    store: Store, src: JobState, dst: JobState
) -> None:
    (job_id,) = await _jobs_in(store, src, 1)
    result = await store.jobs.transition(
        [Change(job_id, src, dst, state_data={"why": "test"}, fields={"return_code": 3})]
    )
    assert result.moved == [job_id] and result.all_moved
    job = await store.jobs.get(job_id)
    assert job.state == dst
    assert job.state_data == {"why": "test"}
    assert job.return_code == 3
    history = await store.events.for_job(job_id)
    assert [(e.from_state, e.to_state) for e in history][-1] == (src, dst)
    assert history[-1].state_data == {"why": "test"}


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{f}->{t}" for f, t in ILLEGAL])
async def test_illegal_transition_is_refused_and_writes_nothing(
    store: Store, src: JobState, dst: JobState
) -> None:
    ok_id, bad_id = await _jobs_in(store, src, 2)
    legal_to = next(iter(TRANSITIONS[src]), None)
    changes = [Change(bad_id, src, dst)]
    if legal_to is not None:
        changes.insert(0, Change(ok_id, src, legal_to))
    with pytest.raises(InvalidTransition) as info:
        await store.jobs.transition(changes)
    assert str(info.value) == f"Job {bad_id}: transition {src} -> {dst} is not allowed"
    assert await store.jobs.states([ok_id, bad_id]) == {ok_id: src, bad_id: src}
    assert await store.events.count(from_state={"$ne": "CREATED"}) == 0


async def test_transition_by_the_wrong_actor_is_refused(store: Store) -> None:
    (job_id,) = await _jobs_in(store, JobState.RUNNING, 1)
    with pytest.raises(InvalidTransition, match=r"RUNNING -> RUN_DONE by reaper"):
        await store.jobs.transition(
            [Change(job_id, JobState.RUNNING, JobState.RUN_DONE, by=Actor.REAPER)]
        )


async def test_job_not_in_expected_state_is_reported_not_moved(store: Store) -> None:
    a, b = await _jobs_in(store, JobState.READY, 2)
    await store.jobs.transition([Change(a, JobState.READY, JobState.STAGED_IN)])
    result = await store.jobs.transition(
        [
            Change(a, JobState.READY, JobState.STAGED_IN),
            Change(b, JobState.READY, JobState.STAGED_IN),
        ]
    )
    assert result.moved == [b]
    assert result.unmoved == {a: JobState.STAGED_IN}
    missing = await store.jobs.transition([Change(999_999, JobState.READY, JobState.STAGED_IN)])
    assert missing.unmoved == {999_999: None}
    assert len(await store.events.for_job(a)) == 2  # CREATED->READY, READY->STAGED_IN once


async def test_two_concurrent_claimers_move_each_job_exactly_once(
    store: Store, settings: Settings
) -> None:
    ids = await _jobs_in(store, JobState.PREPROCESSED, 200)

    async def claimer(session_id: int) -> list[int]:
        order = ids[:]
        random.Random(session_id).shuffle(order)
        won: list[int] = []
        # a second client: a real concurrent connection, as another launcher would have
        async with open_store(settings.mongodb_url, settings.db, init_schema=False) as st:
            for start in range(0, len(order), 10):
                chunk = order[start : start + 10]
                result = await st.jobs.transition(
                    [
                        Change(
                            i,
                            JobState.PREPROCESSED,
                            JobState.RUNNING,
                            fields={"session_id": session_id},
                            by=Actor.LAUNCHER,
                        )
                        for i in chunk
                    ]
                )
                won += result.moved
        return won

    first, second = await asyncio.gather(claimer(1), claimer(2))
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(ids)
    assert await store.events.count(to_state="RUNNING") == 200
    jobs = await store.jobs.get_many(ids)
    owners = {j.id: j.session_id for j in jobs}
    assert {i for i, s in owners.items() if s == 1} == set(first)
    assert {i for i, s in owners.items() if s == 2} == set(second)


async def test_a_reset_sees_its_parents_as_the_batch_leaves_them(store: Store) -> None:
    parent, done = await _jobs_in(store, JobState.FAILED, 2)
    await store.db["jobs"].update_one({"_id": done}, {"$set": {"state": "JOB_FINISHED"}})
    (child,) = [
        j.id
        for j in await store.jobs.create_many(
            [Job(app_id=1, site_id=1, workdir="c", parent_ids=[parent, done])]
        )
    ]
    assert child is not None and (await store.jobs.get(child)).state is JobState.FAILED
    F, R = JobState.FAILED, JobState.READY
    result = await store.jobs.transition(  # the child first: taken after its parent all the same
        [Change(child, F, R, by=Actor.USER), Change(parent, F, R, by=Actor.USER)]
    )
    assert result.final == {parent: R, child: JobState.AWAITING_PARENTS}
    docs = {d["_id"]: d async for d in store.db["jobs"].find({"_id": {"$in": [parent, done]}})}
    assert docs[parent].get("last_child_at")  # its end now reaches the resolver
    assert not docs[done].get("last_child_at")  # finished: nothing to wait for
    history = await store.events.for_job(child)
    assert [(e.from_state, e.to_state, e.by) for e in history][-1] == (
        "FAILED",
        "AWAITING_PARENTS",
        Actor.USER,
    )
