"""Lazy queries shared by every manager: filters, ordering, windows, reads, and bulk update and
delete in one call; building a query (and its dunders) never does I/O."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest

from balsam_mq import ApplicationDefinition, BatchJob, EventLog, Job
from balsam_mq.domain import JobState, utcnow
from balsam_mq.errors import InvalidTransition, MultipleResults, NotFound, QueryError
from balsam_mq.sdk import App, Client, Site
from balsam_mq.store import Store

S = JobState
Drive = Any


def apps() -> tuple[type[ApplicationDefinition], type[ApplicationDefinition]]:
    class Sim(ApplicationDefinition):
        site = "polaris"
        command_template = "sim {{ n }}"

    class Post(ApplicationDefinition):
        site = "polaris"
        command_template = "post"

    return Sim, Post


async def make_jobs() -> tuple[list[Job], list[Job]]:
    """6 Sim jobs (tags run=H2O for even n) and 2 Post jobs children of the first two."""
    Sim, Post = apps()
    sims = [
        Sim.submit(f"sim/{n}", n=n, save=False, tags={"run": "H2O" if n % 2 == 0 else "CO2"})
        for n in range(6)
    ]
    await Job.objects.bulk_create(sims)
    posts = [Post.submit(f"post/{i}", parent_ids=[sims[i].id], save=False) for i in range(2)]
    await Job.objects.bulk_create(posts)
    return sims, posts


def ids(jobs: list[Job]) -> list[int | None]:
    return [j.id for j in jobs]


async def test_filters(either: tuple[Client, Site, Drive]) -> None:
    _, site, drive = either
    sims, posts = await make_jobs()
    _, Post = apps()  # another class object of the same app: found by site and name
    await drive([sims[0].id, sims[1].id], S.FAILED)
    q = Job.objects
    assert ids(await q.filter(id=sims[2].id)) == [sims[2].id]
    assert ids(await q.filter(id=[sims[3].id, sims[1].id])) == [sims[1].id, sims[3].id]
    assert ids(await q.filter(state="FAILED")) == ids(sims[:2])
    assert await q.filter(state={"FAILED", "AWAITING_PARENTS"}).count() == 4
    assert await q.filter(state__ne="FAILED").count() == 6
    assert ids(await q.filter(tags={"run": "H2O"})) == ids(sims[0::2])
    assert await q.filter(tags="run:CO2").count() == 3
    assert await q.filter(tags=["run"]).count() == 6
    assert await q.filter(app=Post).count() == 2
    assert await q.filter(app="Sim").count() == 6
    assert await q.filter(app_id=posts[0].app_id).count() == 2
    assert await q.filter(site="polaris").count() == 8
    assert await q.filter(site=site).count() == 8
    assert await q.filter(site="elsewhere").count() == 0
    assert ids(await q.filter(workdir__contains="post/")) == ids(posts)
    assert ids(await q.filter(parent_id=sims[1].id)) == [posts[1].id]
    assert ids(await q.filter(parent_id=ids(sims[:2]))) == ids(posts)
    now = utcnow()
    assert await q.filter(last_update__lte=now + timedelta(seconds=1)).count() == 8
    assert await q.filter(last_update_after=now + timedelta(seconds=1)).count() == 0
    assert await q.filter(state="FAILED", tags={"run": "H2O"}).count() == 1
    # parameters are stored as JSON, so a query finds them by value (typed: 3 is not "3")
    assert ids(await q.filter(parameters={"n": 3})) == [sims[3].id]
    assert ids(await q.filter(parameters="n:4")) == [sims[4].id]
    assert await q.filter(parameters={"n": "3"}).count() == 0
    assert await q.filter(parameters=["n"]).count() == 6
    assert await q.filter(parameters={"n": 3}, tags={"run": "H2O"}).count() == 0


async def test_order_windows_and_single_reads(either: tuple[Client, Site, Drive]) -> None:
    sims, _ = await make_jobs()
    q = Job.objects.filter(app="Sim").order_by("-id")
    assert ids(await q) == ids(sims[::-1])
    assert ids(await q[1:3]) == [sims[4].id, sims[3].id]
    assert ids(await q[1:3][1:]) == [sims[3].id]
    # ties are broken by id in the direction of the last key
    assert ids(await Job.objects.filter(app="Sim").order_by("-state")) == ids(sims[::-1])
    assert await q[2:].count() == 4
    assert (await q.first()).id == sims[5].id  # type: ignore[union-attr]
    assert await Job.objects.filter(app="nothing").first() is None
    assert (await Job.objects.get(id=sims[0].id)).workdir == "sim/0"
    with pytest.raises(NotFound):
        await Job.objects.get(id=10_000)
    with pytest.raises(MultipleResults):
        await Job.objects.get(app="Sim")
    assert [j.workdir async for j in Job.objects.filter(tags={"run": "H2O"})] == [
        "sim/0",
        "sim/2",
        "sim/4",
    ]
    assert await q.exists() and not await q.filter(state="FAILED").exists()


@pytest.mark.direct_only  # counts the reads this client makes of MongoDB
async def test_values_read_only_the_fields_named(
    client: Client, site: Site, store: Store, drive: object
) -> None:
    sims, _ = await make_jobs()
    await drive([sims[0].id], S.JOB_FINISHED)
    await store.db.command("profile", 2)  # record every operation on this test's database
    try:
        rows = await Job.objects.filter(app="Sim").order_by("-id")[:2].values("id", "state")
        finished = await Job.objects.filter(state="JOB_FINISHED").values("id", "tags")
    finally:
        await store.db.command("profile", 0)
    assert rows == [
        {"id": sims[5].id, "state": S.PREPROCESSED},
        {"id": sims[4].id, "state": S.PREPROCESSED},
    ]
    assert finished == [{"id": sims[0].id, "tags": {"run": "H2O"}}]
    profile = store.db["system.profile"]
    reads = [d["command"] async for d in profile.find({"op": "query"})]
    assert {c["find"] for c in reads} == {"apps", "jobs"}  # app ids for app="Sim", then jobs
    assert {tuple(sorted(c["projection"])) for c in reads} == {
        ("_id",),  # app documents carry their class: only the ids are read
        ("_id", "state"),
        ("_id", "tags"),
    }
    with pytest.raises(QueryError, match="jobs has no field 'result' to return"):
        await Job.objects.all().values("id", "result")


async def test_update_sets_fields_and_moves_states_in_one_call(
    client: Client, site: Site, store: Store, drive: object
) -> None:
    sims, _ = await make_jobs()
    await drive(ids(sims[:4]), S.FAILED)
    h2o = Job.objects.filter(state="FAILED", tags={"run": "H2O"})
    assert await h2o.update(state="RESTART_READY", data={"retry": True}) == 2
    untouched = await Job.objects.get(id=sims[4].id)  # H2O but not FAILED
    assert (untouched.state, untouched.data) == (S.PREPROCESSED, {})
    moved = await store.jobs.get_many([sims[0].id, sims[2].id])  # type: ignore[list-item]
    assert [(m.state, m.data) for m in moved] == [(S.RESTART_READY, {"retry": True})] * 2
    history = await store.events.for_job(sims[0].id)  # type: ignore[arg-type]
    assert (history[-1].from_state, history[-1].to_state, history[-1].by) == (
        "FAILED",
        "RESTART_READY",
        "user",
    )
    assert await Job.objects.filter(app="Post").update(num_nodes=4, tags={"k": "v"}) == 2
    assert {(p.num_nodes, p.tags["k"]) for p in await Job.objects.filter(app="Post")} == {(4, "v")}
    # a state change the table refuses changes nothing
    with pytest.raises(InvalidTransition, match="AWAITING_PARENTS -> RESTART_READY by user"):
        await Job.objects.filter(app="Post").update(state="RESTART_READY", num_nodes=8)
    assert {p.num_nodes for p in await Job.objects.filter(app="Post")} == {4}
    with pytest.raises(QueryError, match="field 'colour' cannot be updated"):
        await Job.objects.all().update(colour="red")


async def test_delete_a_query(either: tuple[Client, Site, Drive]) -> None:
    sims, _ = await make_jobs()
    assert await Job.objects.filter(app="Post").delete() == 2
    assert await Job.objects.filter(app="Sim").order_by("id")[4:].delete() == 2
    assert ids(await Job.objects.all()) == ids(sims[:4])


async def test_building_and_dunders_do_no_io() -> None:
    """No client exists here: anything that did I/O would try to open one and fail."""
    q = Job.objects.filter(state="FAILED", app="Sim").order_by("-last_update")[:10]
    assert repr(q) == (
        "<Query jobs filter(state__eq=<JobState.FAILED: 'FAILED'>, app='Sim') "
        "order_by(-last_update) [0:10]>"
    )
    with pytest.raises(TypeError, match=r"await query.count\(\)"):
        len(q)
    with pytest.raises(TypeError, match=r"await query.exists\(\)"):
        bool(q)
    first = q[0]  # fetched when awaited
    assert inspect.iscoroutine(first)
    first.close()
    with pytest.raises(QueryError, match="indexes cannot be negative"):
        q[-1]
    with pytest.raises(QueryError, match="jobs cannot be filtered by 'colour'"):
        Job.objects.filter(colour="red")
    with pytest.raises(QueryError, match="unknown job state 'DONE'"):
        Job.objects.filter(state="DONE")
    with pytest.raises(QueryError, match="expected a datetime"):
        Job.objects.filter(last_update__gt="yesterday")
    with pytest.raises(QueryError, match="cannot be ordered by 'tags'"):
        Job.objects.order_by("tags")
    # filters that name jobs are resolved when the query runs, and checked when built
    with pytest.raises(QueryError, match="only JSON values"):
        Job.objects.filter(parameters={"when": utcnow()})
    with pytest.raises(QueryError, match="tags filter: expected a dict"):
        EventLog.objects.filter(tags=3)


async def test_other_managers_share_the_query(
    client: Client, site: Site, store: Store, drive: object
) -> None:
    sims, _ = await make_jobs()
    await Site.objects.create(name="theta")
    assert [s.name for s in await Site.objects.order_by("name")] == ["polaris", "theta"]
    assert (await Site.objects.get(name="polaris")).id == site.id
    assert {a.name for a in await ApplicationDefinition.objects.filter(site="polaris")} == {
        "Sim",
        "Post",
    }
    assert isinstance(await App.objects.get(name="Sim"), App)
    batch = await BatchJob.objects.create(site_id=site.id, num_nodes=2, wall_time_min=30)
    assert await BatchJob.objects.filter(site=site, state="pending_submission").count() == 1
    assert await BatchJob.objects.filter(id=batch.id).update(state="pending_deletion") == 1
    assert (await BatchJob.objects.get(id=batch.id)).state == "pending_deletion"
    assert await store.events.count(kind="batchjob", batch_job_id=batch.id) == 2
    batch.queue = "debug"
    await batch.save()
    await batch.refresh()
    assert (batch.queue, batch.state) == ("debug", "pending_deletion")
    await drive([sims[0].id], S.JOB_FINISHED)
    log = await EventLog.objects.filter(job_id=sims[0].id).order_by("timestamp")
    assert [e.to_state for e in log][-1] == "JOB_FINISHED" and len(log) == 8
    assert await EventLog.objects.filter(job_id=sims[0].id, to_state="RUNNING").count() == 1
    assert log[1].data == {}
    with pytest.raises(QueryError, match="append-only"):
        await EventLog.objects.filter(job_id=sims[0].id).delete()
