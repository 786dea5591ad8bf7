"""Analytics: throughput and utilization from the event log, nodes from batch jobs, on both
backends (and without await), as series ready for matplotlib."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from support.driving import Drive, actor

from balsam_mq import ApplicationDefinition, BatchJob, EventLog, Job, blocking
from balsam_mq.analytics import (
    available_nodes,
    blocking as analytics_blocking,
    throughput_report,
    utilization_report,
)
from balsam_mq.analytics.series import Mark, levels, samples, spans, time_average, value_at
from balsam_mq.domain import Change, JobState, utcnow
from balsam_mq.errors import QueryError
from balsam_mq.sdk import Client, Site
from balsam_mq.settings import Settings
from balsam_mq.store import Store

S = JobState
Either = tuple[Client, Site, Drive]


def adder() -> type[ApplicationDefinition]:
    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x: int) -> int:
            return x + 1

    return Adder


async def later() -> None:
    """Until the clock has left the millisecond of the events just written (timestamps keep
    milliseconds), so the next step's events are stamped later: a condition, not a delay."""
    start = utcnow()
    while utcnow() <= start:
        await anyio.lowlevel.checkpoint()


async def finished_times() -> list[datetime]:
    rows = (
        await EventLog.objects.filter(to_state="JOB_FINISHED")
        .order_by("timestamp")
        .values("timestamp")
    )
    return [r["timestamp"] for r in rows]


async def test_throughput_counts_the_jobs_that_entered_a_state(either: Either) -> None:
    _, site, drive = either
    Adder = adder()
    new = [
        Adder.submit(f"t/{i}", x=i, save=False, tags={"run": "A" if i < 3 else "B"})
        for i in range(6)
    ]
    ids = [j.id for j in await Job.objects.bulk_create(new)]
    await drive(ids[:2], S.JOB_FINISHED)
    await later()
    await drive(ids[2:5], S.JOB_FINISHED)
    await drive(ids[5:], S.RUNNING)

    times, done = await throughput_report(EventLog.objects.all())
    assert done == [1, 2, 3, 4, 5]
    assert times == sorted(times) == await finished_times()
    assert times[1] < times[2]  # two steps, told apart
    assert all(isinstance(t, datetime) and t.tzinfo is not None for t in times)

    # the query's own filters hold (tags name jobs: resolved once), the manager is all of it
    assert (await throughput_report(EventLog.objects.filter(tags={"run": "A"})))[1] == [1, 2, 3]
    assert (await throughput_report(EventLog.objects, to_state="RUNNING"))[1] == [1, 2, 3, 4, 5, 6]
    assert (await throughput_report(EventLog.objects.all(), S.JOB_FINISHED))[0] == times
    assert await throughput_report(EventLog.objects.all(), "FAILED") == ([], [])
    assert await throughput_report(EventLog.objects.filter(site_id=(site.id or 0) + 1)) == ([], [])

    with pytest.raises(QueryError, match="unknown job state 'DONE'"):
        await throughput_report(EventLog.objects.all(), "DONE")
    with pytest.raises(QueryError, match="reads events, not jobs"):
        await throughput_report(Job.objects.all())
    with pytest.raises(QueryError, match="whole query, not a slice"):
        await throughput_report(EventLog.objects.all()[:3])


async def test_utilization_rises_and_falls_with_node_weighting(either: Either) -> None:
    _, _, drive = either
    Adder = adder()
    jobs = await Job.objects.bulk_create(
        [
            Adder.submit("a", x=1, save=False, num_nodes=2),  # 2 nodes
            Adder.submit("b", x=2, save=False, node_packing_count=4),  # a quarter of a node
            Adder.submit("c", x=3, save=False),  # one node
        ]
    )
    a, b, c = (j.id or 0 for j in jobs)
    for ids, to in [
        ([a], S.RUNNING),
        ([b], S.RUNNING),
        ([c], S.RUNNING),
        ([a], S.JOB_FINISHED),
        ([b], S.FAILED),  # by RUN_ERROR
        ([c], S.JOB_FINISHED),
    ]:
        await drive(ids, to)
        await later()

    times, busy = await utilization_report(EventLog.objects.all())
    assert busy == [2, 2.25, 3.25, 1.25, 1, 0]
    assert all(isinstance(v, float) for v in busy)
    entered = (
        await EventLog.objects.filter(to_state="RUNNING").order_by("timestamp").values("timestamp")
    )
    assert times[:3] == [r["timestamp"] for r in entered]
    assert times == sorted(set(times))  # one point per step, in order

    assert (await utilization_report(EventLog.objects, node_weighting=False))[1] == [
        1, 2, 3, 2, 1, 0
    ]  # fmt: skip
    assert (await utilization_report(EventLog.objects.filter(job_id=[b, c])))[1] == [
        0.25, 1.25, 1, 0
    ]  # fmt: skip
    assert await utilization_report(EventLog.objects.filter(to_state="READY")) == ([], [])
    # a job deleted since counts one node
    assert await Job.objects.filter(id=a).delete() == 1
    assert (await utilization_report(EventLog.objects.all()))[1] == [1, 1.25, 2.25, 1.25, 1, 0]


async def test_a_restarted_job_counts_once_per_stay(
    client: Client, site: Site, store: Store, drive: Drive
) -> None:
    Adder = adder()
    (job,) = await Job.objects.bulk_create(
        [Adder.submit("c", x=3, save=False, node_packing_count=2)]
    )
    c = job.id or 0

    async def move(src: JobState, dst: JobState) -> None:
        moved = await store.jobs.transition([Change(c, src, dst, by=actor(src, dst))])
        assert moved.all_moved, moved.unmoved

    for step in [
        lambda: drive([c], S.RUNNING),
        lambda: move(S.RUNNING, S.RESTART_READY),  # given back by its launcher
        lambda: move(S.RESTART_READY, S.RUNNING),  # and claimed again
        lambda: drive([c], S.JOB_FINISHED),
    ]:
        await step()
        await later()

    times, busy = await utilization_report(EventLog.objects.filter(job_id=c))
    assert busy == [0.5, 0, 0.5, 0]
    log = (
        await EventLog.objects.filter(job_id=c)
        .order_by("seq")
        .values("from_state", "to_state", "timestamp")
    )
    assert times == [r["timestamp"] for r in log if "RUNNING" in (r["from_state"], r["to_state"])]
    # a window that opens after the first stay began: its end is left out, the second is whole
    window = EventLog.objects.filter(job_id=c, timestamp__gte=times[1])
    assert await utilization_report(window) == (times[2:], [0.5, 0])


async def test_available_nodes_from_batch_jobs(either: Either) -> None:
    _, site, _ = either
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    hour = timedelta(hours=1)
    held = [
        (4, t0, t0 + 2 * hour),
        (2, t0 + hour, None),  # still running
        (8, None, None),  # never started
        (1, t0 + 2 * hour, t0 + 3 * hour),
    ]
    for num_nodes, start, end in held:
        batch = await BatchJob.objects.create(site_id=site.id, num_nodes=num_nodes)
        await BatchJob.objects.filter(id=batch.id).update(start_time=start, end_time=end)

    times, nodes = await available_nodes(BatchJob.objects.all())
    # 4 nodes, then 2 more; at noon the 4 leave as 1 arrives; the 2 are still up
    assert times == [t0, t0 + hour, t0 + 2 * hour, t0 + 3 * hour]
    assert nodes == [4, 6, 3, 2]
    assert await available_nodes(BatchJob.objects.filter(num_nodes=8)) == ([], [])
    assert await available_nodes(BatchJob.objects.filter(site_id=(site.id or 0) + 1)) == ([], [])
    with pytest.raises(QueryError, match="reads batch_jobs, not events"):
        await available_nodes(EventLog.objects.all())


def reports_without_await(settings: Settings) -> dict[str, Any]:
    with blocking.connect(settings):
        return {
            "done": analytics_blocking.throughput_report(blocking.EventLog.objects.all()),
            "busy": analytics_blocking.utilization_report(
                blocking.EventLog.objects.filter(kind="job"), node_weighting=False
            ),
            "nodes": analytics_blocking.available_nodes(blocking.BatchJob.objects),
        }


async def test_the_blocking_twins(
    settings: Settings, client: Client, site: Site, drive: Drive
) -> None:
    Adder = adder()
    ids = [j.id for j in await Job.objects.bulk_create([Adder.submit("w", x=1, save=False)])]
    await drive(ids, S.JOB_FINISHED)
    out = await anyio.to_thread.run_sync(functools.partial(reports_without_await, settings))
    times = await finished_times()
    assert out["done"] == (times, [1])
    assert out["busy"][1] == [1, 0] and out["busy"][0][-1] == times[0]
    assert out["nodes"] == ([], [])


# --- the series, pure ---------------------------------------------------------------------

T = datetime(2024, 5, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T + timedelta(seconds=seconds)


def row(job_id: int, seq: int, seconds: int) -> dict[str, Any]:
    return {"job_id": job_id, "seq": seq, "timestamp": at(seconds)}


def test_stays_at_one_instant_show_only_the_level_after_them() -> None:
    # job 1 runs 0..5; job 2 enters and leaves at 5, job 3 enters at 5 and runs on
    enters = [row(1, 4, 0), row(2, 4, 5), row(3, 4, 5)]
    leaves = [row(1, 5, 5), row(2, 5, 5), row(9, 7, 1)]  # job 9 entered before the window
    marks = spans(enters, leaves)
    assert [(m.key, m.sign) for m in marks] == [(1, 1), (1, -1), (2, 1), (2, -1), (3, 1)]
    times, values = levels(marks, {3: 0.5})
    assert times == [at(0), at(5)] and values == [1, 0.5]
    # a job's own events are ordered by seq, whatever the order the rows come in
    restart = spans([row(4, 6, 9), row(4, 4, 8)], [row(4, 5, 9), row(4, 7, 9)])
    assert [(m.time, m.sign) for m in restart] == [(at(8), 1), (at(9), -1), (at(9), 1), (at(9), -1)]
    assert levels(restart) == ([at(8), at(9)], [1, 0])


def test_readings_of_a_series() -> None:
    times, values = [at(0), at(10), at(30)], [2, 4, 0]
    assert [value_at(times, values, at(s)) for s in (-1, 0, 5, 10, 29, 30, 99)] == [
        0, 2, 2, 4, 4, 0, 0
    ]  # fmt: skip
    assert time_average(times, values) == (2 * 10 + 4 * 20) / 30
    assert time_average([at(3)], [7]) == 7 and time_average([], []) == 0
    assert samples(times, 4) == [at(0), at(10), at(20), at(30)] and samples([], 3) == []
    assert samples([at(s) for s in range(0, 101)], 3) == [at(0), at(50), at(100)]
    assert samples([at(4)] * 20, 3) == [at(4)]
    assert levels([Mark(at(1), 1, 1), Mark(at(2), 1, -1)], {1: 2}) == ([at(1), at(2)], [2, 0])
