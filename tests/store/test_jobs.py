"""Job creation: block ids, initial states from parents, creation events, a transaction per
chunk."""

from __future__ import annotations

from itertools import islice
from typing import Any

import pytest
from bson.errors import InvalidDocument

from balsam_mq.domain import Change, Job, JobState
from balsam_mq.domain.wire import MAX_CREATE
from balsam_mq.errors import JobError, NotFound, StoreError
from balsam_mq.store import Store
from balsam_mq.store.creation import CREATE_CHUNK, chunk_sizes


async def test_bulk_create_reserves_one_contiguous_block(store: Store) -> None:
    first = await store.jobs.create_many([Job(app_id=1, site_id=1, workdir="a")])
    many = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir=f"b/{i}") for i in range(1000)]
    )
    ids = [j.id for j in many]
    assert ids[0] > first[0].id  # type: ignore[operator]
    assert ids == list(range(ids[0], ids[0] + 1000))  # type: ignore[operator]
    assert await store.db["counters"].count_documents({}) == 1
    assert await store.db["jobs"].count_documents({}) == 1001
    assert await store.events.count(from_state="CREATED", to_state="READY") == 1001


async def test_job_with_unfinished_parent_awaits_it(store: Store) -> None:
    (parent,) = await store.jobs.create_many([Job(app_id=1, site_id=1, workdir="p")])
    assert parent.id is not None
    (child,) = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir="c", parent_ids=[parent.id])]
    )
    assert child.state == JobState.AWAITING_PARENTS
    await store.db["jobs"].update_one({"_id": parent.id}, {"$set": {"state": "STAGED_OUT"}})
    await store.jobs.transition([Change(parent.id, JobState.STAGED_OUT, JobState.JOB_FINISHED)])
    (late,) = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir="l", parent_ids=[parent.id])]
    )
    assert late.state == JobState.READY


async def test_missing_parent_is_a_clear_error(store: Store) -> None:
    with pytest.raises(JobError, match=r"parent job\(s\) \[424242\] do not exist"):
        await store.jobs.create_many([Job(app_id=1, site_id=1, workdir="x", parent_ids=[424242])])
    assert await store.db["jobs"].count_documents({}) == 0


async def test_get_unknown_job_names_it(store: Store) -> None:
    with pytest.raises(NotFound, match="Job 77 does not exist"):
        await store.jobs.get(77)


async def test_schema_is_idempotent(store: Store) -> None:
    from balsam_mq.store import ensure_schema

    origin = await store.db["relay_state"].find_one({"_id": "__origin__"})
    await ensure_schema(store.db)
    await ensure_schema(store.db)
    assert await store.db["relay_state"].find_one({"_id": "__origin__"}) == origin
    info = await store.db["jobs"].index_information()
    assert "site_id_1_state_1__id_1" in info and "parent_ids_1" in info


async def test_schema_replaces_retired_indexes(store: Store) -> None:
    from balsam_mq.store import ensure_schema

    jobs = store.db["jobs"]
    await jobs.create_index([("site_id", 1), ("state", 1)])  # as an earlier version made it
    await jobs.create_index([("session_id", 1)], sparse=True)
    await jobs.create_index(
        [("session_id", 1)], name="session_id_running", partialFilterExpression={"state": "RUNNING"}
    )
    await ensure_schema(store.db)
    info = await jobs.index_information()
    assert not {"site_id_1_state_1", "session_id_1", "session_id_running"} & set(info)
    assert "site_id_1_state_1__id_1" in info


async def test_child_of_a_failed_parent_is_created_failed_naming_it(store: Store) -> None:
    (parent,) = await store.jobs.create_many([Job(app_id=1, site_id=1, workdir="p")])
    assert parent.id is not None
    await store.db["jobs"].update_one(
        {"_id": parent.id}, {"$set": {"state": "FAILED", "state_data": {"failed_ancestor": 1}}}
    )
    (child,) = await store.jobs.create_many(
        [Job(app_id=1, site_id=1, workdir="c", parent_ids=[parent.id])]
    )
    assert child.state == JobState.FAILED
    assert child.state_data == {
        "reason": f"parent job {parent.id} failed",
        "failed_parent": parent.id,
        "failed_ancestor": 1,
    }
    (event,) = await store.events.for_job(child.id)  # type: ignore[arg-type]
    assert (event.from_state, event.to_state) == ("CREATED", "FAILED")


async def test_documents_are_created_a_chunk_per_transaction(store: Store) -> None:
    n = CREATE_CHUNK * 2 + 5
    docs = [Job(app_id=1, site_id=1, workdir=f"d/{i}").to_doc() for i in range(n)]
    docs[-1]["data"] = {"x": object()}  # MongoDB cannot store it: the last chunk fails
    reported: list[tuple[int, list[int]]] = []

    def created(offset: int, chunk: list[dict[str, Any]]) -> None:
        reported.append((offset, [d["_id"] for d in chunk]))

    with pytest.raises(InvalidDocument):
        await store.jobs.create_documents(iter(docs), n, created)
    # the chunks before it stay created, and were reported with their ids
    offsets, end = [], 0
    for size in chunk_sizes():
        if end + size >= n:  # the last chunk, which holds the bad document
            break
        offsets.append(end)
        end += size
    assert len(offsets) > 2 and end > CREATE_CHUNK
    assert sorted(offset for offset, _ in reported) == offsets
    assert max(len(chunk) for _, chunk in reported) <= CREATE_CHUNK
    ids = sorted(i for _, chunk in reported for i in chunk)
    assert ids == list(range(ids[0], ids[0] + end))
    assert await store.db["jobs"].count_documents({}) == end
    assert await store.events.count(to_state="READY") == end


async def test_an_atomic_creation_creates_all_or_none(store: Store) -> None:
    n = CREATE_CHUNK  # what the gateway's POST /jobs may hold (MAX_CREATE) at most
    assert MAX_CREATE <= CREATE_CHUNK
    docs = [Job(app_id=1, site_id=1, workdir=f"d/{i}").to_doc() for i in range(n)]
    docs[-1]["data"] = {"x": object()}  # MongoDB cannot store it
    reported: list[int] = []
    with pytest.raises(InvalidDocument):
        await store.jobs.create_documents(
            iter(docs), n, lambda offset, _: reported.append(offset), atomic=True
        )
    assert reported == [] and await store.db["jobs"].count_documents({}) == 0
    docs[-1]["data"] = {}  # storable now: all are created, in one transaction
    await store.jobs.create_documents(
        iter(docs), n, lambda offset, _: reported.append(offset), atomic=True
    )
    assert reported == [0] and await store.db["jobs"].count_documents({}) == n
    with pytest.raises(StoreError, match="at most"):
        await store.jobs.create_documents(iter([]), n + 1, lambda *_: None, atomic=True)


def test_a_creation_starts_with_a_small_transaction_and_grows_to_the_largest() -> None:
    sizes = list(islice(chunk_sizes(), 12))
    assert sizes[0] < 100  # the first jobs are runnable soon after the call begins
    assert sizes == sorted(sizes) and sizes[-1] == CREATE_CHUNK


async def test_documents_must_match_their_count(store: Store) -> None:
    docs = [Job(app_id=1, site_id=1, workdir=f"d/{i}").to_doc() for i in range(3)]
    with pytest.raises(StoreError, match="3 documents for a count of 4"):
        await store.jobs.create_documents(docs, 4, lambda offset, chunk: None)
    with pytest.raises(StoreError, match="more documents than the count"):
        await store.jobs.create_documents(docs, 2, lambda offset, chunk: None)
