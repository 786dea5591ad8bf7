"""Query syntax on MongoDB: listings filtered by state, site, app or tags read only their page,
and counts of a state read index entries alone."""

from __future__ import annotations

from typing import Any

import pytest

from balsam_mq.domain import Actor, App, Change, Job, JobState
from balsam_mq.domain.queries import QuerySpec, parse_condition
from balsam_mq.errors import QueryError
from balsam_mq.store import Store
from balsam_mq.store.queries import event_stages, to_filter, to_sort

S = JobState


def _spec(order: str, stop: int, **filters: Any) -> QuerySpec:
    conditions = tuple(parse_condition("jobs", k, v) for k, v in filters.items())
    return QuerySpec("jobs", conditions, (order,), 0, stop)


async def _plan(store: Store, spec: QuerySpec) -> dict[str, Any]:
    cursor = store.db["jobs"].find(to_filter(spec)).sort(to_sort(spec)).limit(spec.stop or 0)
    stats: dict[str, Any] = (await cursor.explain())["executionStats"]
    return stats


async def test_pages_read_only_their_own_entries(store: Store) -> None:
    jobs = [
        Job(app_id=1 + i % 3, site_id=1 + i % 2, workdir=f"w/{i}", tags={"run": f"r{i % 4}"})
        for i in range(600)
    ]
    created = await store.jobs.create_many(jobs)
    failed = [j.id for j in created if j.id is not None and j.id % 10 == 0]
    await store.db["jobs"].update_many({"_id": {"$in": failed}}, {"$set": {"state": "FAILED"}})
    for spec in (
        _spec("-id", 5, state="FAILED"),
        _spec("id", 5, state="FAILED"),
        _spec("-id", 5, state="FAILED", site_id=2),
        _spec("-id", 5, state="FAILED", site_id=[1, 2]),
        _spec("-id", 5, app_id=[1, 3]),
        _spec("-last_update", 5),
    ):
        stats = await _plan(store, spec)
        assert stats["nReturned"] == 5, spec
        assert stats["totalDocsExamined"] == 5, (spec, stats["totalDocsExamined"])
    count = await store.db.command(
        "explain", {"count": "jobs", "query": {"state": JobState.FAILED.value}}
    )
    assert count["queryPlanner"]["winningPlan"]["inputStage"]["stage"] == "COUNT_SCAN"


def _events(
    order: tuple[str, ...] = ("timestamp", "id"),
    start: int = 0,
    stop: int | None = None,
    **filters: Any,
) -> QuerySpec:
    conditions = tuple(parse_condition("events", k, v) for k, v in filters.items())
    return QuerySpec("events", conditions, order, start, stop)


async def test_the_event_log_gives_every_step_of_a_passage_as_an_event(store: Store) -> None:
    """A job's creation passes through to PREPROCESSED and its run's end to JOB_FINISHED,
    each in one stored document: queries still see one event per step."""
    app = await store.apps.upsert(App(site_id=1, name="Plain", command_template="true", hooks=[]))
    assert app.id is not None
    jobs = await store.jobs.create_many(
        [Job(app_id=app.id, site_id=1, workdir=f"p/{i}") for i in range(3)]
    )
    ids = [j.id for j in jobs if j.id is not None]
    await store.jobs.transition(
        [Change(i, S.PREPROCESSED, S.RUNNING, by=Actor.LAUNCHER) for i in ids]
    )
    await store.jobs.transition([Change(i, S.RUNNING, S.RUN_DONE, by=Actor.LAUNCHER) for i in ids])
    assert await store.db["events"].count_documents({"kind": "job"}) == 3 * 3  # documents
    q = store.queries
    history = ["READY", "STAGED_IN", "PREPROCESSED", "RUNNING"]
    history += ["RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]

    assert await q.count(_events(kind="job")) == 3 * 8
    assert await q.count(_events(to_state="JOB_FINISHED")) == 3  # the last step of a document
    assert await q.count(_events(kind="job", to_state__ne="READY")) == 3 * 7
    assert await q.count(_events(job_id=ids[0], seq__gte=6)) == 3
    assert await q.count(_events(job_id=ids[0])) == 8  # a document's steps counted
    assert await q.count(_events(job_id=ids[:2], to_state=["READY", "STAGED_OUT"])) == 4
    assert await q.count(_events(job_id=ids[0], start=2, stop=5)) == 3
    mine = await q.find(_events(job_id=ids[0]))
    assert [e.to_state for e in mine] == history
    assert [e.seq for e in mine] == list(range(1, 9))
    assert len({e.id for e in mine}) == 8
    newest = await q.find(_events(("-timestamp", "-id"), job_id=ids[0]))
    assert [e.to_state for e in newest] == history[::-1]
    by_seq = await q.find(_events(("-seq", "job_id"), stop=4))  # a step's field: sorted after
    assert [(e.seq, e.job_id) for e in by_seq] == [
        (8, ids[0]),
        (8, ids[1]),
        (8, ids[2]),
        (7, ids[0]),
    ]
    page = await q.find(_events(job_id=ids[1], start=1, stop=3))
    assert [e.to_state for e in page] == history[1:3]
    later = mine[6]  # a step inside a document: found by its own id
    assert [e.to_state for e in await q.find(_events(id=later.id))] == ["STAGED_OUT"]
    assert [
        e.seq
        async for e in q.iterate(_events(job_id=ids[2], to_state__in=["STAGED_IN", "RUN_DONE"]))
    ] == [2, 5]
    with pytest.raises(QueryError, match="append-only"):
        await q.update(_events(job_id=ids[0]), {"state_data": {}})


async def test_the_latest_events_of_a_site_come_from_an_index_walk_not_a_sort(store: Store) -> None:
    app = await store.apps.upsert(App(site_id=2, name="Plain", command_template="true", hooks=[]))
    assert app.id is not None
    for _ in range(3):  # three transactions: three timestamps
        await store.jobs.create_many(
            [Job(app_id=app.id, site_id=2, workdir=f"p/{i}") for i in range(1000)]
        )
    spec = _events(("-timestamp", "-id"), stop=5, site_id=2, kind="job")
    stages = event_stages(spec, ordered=True)
    plan = await store.db.command(
        "explain",
        {"aggregate": "events", "pipeline": stages, "cursor": {}},
        verbosity="executionStats",
    )
    # the documents come in order from the index, read as far as the page needs (a
    # batch at a time), never all sorted first
    stage: dict[str, Any] = plan["stages"][0]["$cursor"]["queryPlanner"]["winningPlan"]
    chain = [stage["stage"]]
    while "inputStage" in stage:
        stage = stage["inputStage"]
        chain.append(stage["stage"])
    assert "SORT" not in chain and chain[-1] == "IXSCAN", chain
    assert stage["keyPattern"] == {"site_id": 1, "timestamp": 1, "_id": 1}
    latest = await store.queries.find(spec)
    newest = ["PREPROCESSED", "STAGED_IN", "READY"]  # a job's creation, latest step first
    assert [e.to_state for e in latest] == (newest * 2)[:5]
    assert len({e.job_id for e in latest}) == 2
