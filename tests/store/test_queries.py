"""Query syntax on MongoDB: listings filtered by state, site, app or tags read only their page,
and counts of a state read index entries alone."""

from __future__ import annotations

from typing import Any

from balsam_mq.domain import Job, JobState
from balsam_mq.domain.queries import QuerySpec, parse_condition
from balsam_mq.store import Store
from balsam_mq.store.queries import to_filter, to_sort


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
