"""Job ids: a process's small creations take them from blocks it reserved ahead; ids stay
unique across processes, and a child numbers above its parents."""

from __future__ import annotations

from balsam_mq.domain import Job, JobState
from balsam_mq.settings import Settings
from balsam_mq.store import Store, open_store
from balsam_mq.store.counters import BLOCK_MAX


async def _one(store: Store, workdir: str, parents: tuple[int, ...] = ()) -> Job:
    (job,) = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir=workdir, parent_ids=list(parents))]
    )
    return job


async def _reserved(store: Store) -> int:
    doc = await store.db["counters"].find_one({"_id": "jobs"})
    assert doc is not None
    return int(doc["value"])


async def test_single_creations_number_on_and_reserve_in_growing_blocks(store: Store) -> None:
    ids = [(await _one(store, f"a/{i}")).id for i in range(7)]
    assert ids == list(range(1, 8))
    assert await _reserved(store) == 1 + 2 + 4  # no id reserved beyond the last block
    await _one(store, "a/7")
    assert await _reserved(store) == 1 + 2 + 4 + 8
    for i in range(200):
        await _one(store, f"b/{i}")
    # 208 ids: blocks of 1..64, then 64 at a time
    assert await _reserved(store) == 1 + 2 + 4 + 8 + 16 + 32 + 64 + 64 + BLOCK_MAX


async def test_two_processes_creating_at_once_never_share_an_id(
    store: Store, settings: Settings
) -> None:
    async with open_store(settings.mongodb_url, settings.db) as other:
        made = []
        for i in range(40):
            made.append(await _one(store, f"here/{i}"))
            made.append(await _one(other, f"there/{i}"))
    ids = [j.id for j in made]
    assert len(set(ids)) == 80
    assert await store.db["jobs"].count_documents({}) == 80


async def test_a_child_numbers_above_a_parent_made_by_another_process(
    store: Store, settings: Settings
) -> None:
    await _one(store, "a")
    kept = await _one(store, "b")  # its block holds one id more, below the parent's
    async with open_store(settings.mongodb_url, settings.db) as other:
        parent = await _one(other, "parent")
    assert parent.id is not None and kept.id is not None and parent.id > kept.id + 1
    child = await _one(store, "child", parents=(parent.id,))
    assert child.id is not None and child.id > parent.id
    assert child.state == JobState.AWAITING_PARENTS
    # the block reserved for the child goes on after it
    assert (await _one(store, "next")).id == child.id + 1
