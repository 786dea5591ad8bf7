"""Throughput, utilization and allocated nodes over time, read through the SDK's backend.

Each report resolves its query once (names, tags and batch jobs to ids), then asks the
backend's ``values()`` for the few fields it needs, filtered and ordered by the database;
the series is built from those rows (``analytics.series``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from balsam_mq.analytics.series import Mark, cumulative, levels, spans
from balsam_mq.domain.queries import Condition, QuerySpec, Resource, parse_condition
from balsam_mq.domain.states import JobState, parse_state
from balsam_mq.errors import QueryError
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.managers import Manager
from balsam_mq.sdk.query import Query

# what a report reads: a query, or a manager (all of its resource)
Selection = Query[Any] | Manager[Any]

# job ids per query when loading jobs' resources (node weighting)
CHUNK = 500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def throughput_report(
    events: Selection, to_state: str | JobState = "JOB_FINISHED"
) -> tuple[list[datetime], list[int]]:
    """How many jobs had entered ``to_state`` by each time: one point per matching event,
    oldest first, valued 1, 2, 3, ... (``([], [])`` when none match).

    Example::

        times, done = await throughput_report(EventLog.objects.filter(tags={"run": "H2O"}))
        plt.step(times, done, where="post")
    """
    state = _state(to_state)
    client = await get_client()
    spec = await _spec(client, events, "events")
    rows = await client.backend.values(
        _narrowed(spec, {"kind": "job", "to_state": state}, ("timestamp", "id")),
        ("timestamp",),
    )
    return cumulative(row["timestamp"] for row in rows)


async def utilization_report(
    events: Selection, node_weighting: bool = True
) -> tuple[list[datetime], list[float]]:
    """How many jobs were RUNNING at each time: one point per time at which a job entered
    RUNNING or left it (by any move), holding the level after every change at that time.

    With ``node_weighting`` each job counts its node footprint, ``num_nodes /
    node_packing_count`` (a job packed four to a node counts 0.25), as stored now; a job
    deleted since counts 1. A move out of RUNNING whose entry lies outside the query (say,
    before a ``timestamp__gte`` filter) is left out.

    Example::

        times, busy = await utilization_report(EventLog.objects.filter(site="polaris"))
        plt.step(times, busy, where="post")
    """
    client = await get_client()
    spec = await _spec(client, events, "events")
    fields = ("job_id", "seq", "timestamp")
    order = ("timestamp", "job_id", "seq")
    running = JobState.RUNNING.value
    enters = await client.backend.values(
        _narrowed(spec, {"kind": "job", "to_state": running}, order), fields
    )
    leaves = await client.backend.values(
        _narrowed(spec, {"kind": "job", "from_state": running}, order), fields
    )
    marks = spans(enters, leaves)
    weights = await _footprints(client, {m.key for m in marks}) if node_weighting else None
    times, values = levels(marks, weights)
    return times, [float(v) for v in values]


async def available_nodes(batch_jobs: Selection) -> tuple[list[datetime], list[int]]:
    """How many nodes the batch jobs held at each time: each counts its ``num_nodes`` from
    its ``start_time`` to its ``end_time`` (one still running counts on past the last
    point); batch jobs that never started are left out.

    Example::

        times, nodes = await available_nodes(BatchJob.objects.filter(site="polaris"))
        plt.step(times, nodes, where="post")
    """
    client = await get_client()
    spec = await _spec(client, batch_jobs, "batch_jobs")
    # a start_time after the epoch: the database leaves out batch jobs that never started
    started = _narrowed(spec, {"start_time__gte": _EPOCH}, ("start_time", "id"))
    rows = await client.backend.values(started, ("id", "start_time", "end_time", "num_nodes"))
    marks = [Mark(r["start_time"], r["id"], 1) for r in rows]
    marks += [Mark(r["end_time"], r["id"], -1) for r in rows if r["end_time"] is not None]
    marks.sort(key=lambda m: m.time)
    times, values = levels(marks, {r["id"]: r["num_nodes"] for r in rows})
    return times, [int(v) for v in values]


# --- helpers ------------------------------------------------------------------------------


def _state(value: str | JobState) -> str:
    try:
        return parse_state(str(value)).value
    except ValueError as exc:
        raise QueryError(f"throughput_report: {exc}") from None


async def _spec(client: Client, source: Selection, resource: Resource) -> QuerySpec:
    """The source's query as data, names resolved to ids (once, for all of a report's reads)."""
    spec = await source.all().spec(client)
    if spec.resource != resource:
        raise QueryError(f"this report reads {resource}, not {spec.resource}: {source!r}")
    if spec.windowed:
        raise QueryError(f"a report reads a whole query, not a slice of it: {source!r}")
    return spec


def _narrowed(spec: QuerySpec, filters: dict[str, Any], order: tuple[str, ...]) -> QuerySpec:
    """``spec`` with more conditions (``filter()`` keywords), in ``order``."""
    more = tuple(parse_condition(spec.resource, key, value) for key, value in filters.items())
    return replace(spec, conditions=spec.conditions + more, order=order)


async def _footprints(client: Client, job_ids: set[int]) -> dict[int, Fraction]:
    """``num_nodes / node_packing_count`` of each job still stored, one query per chunk."""
    ids = sorted(job_ids)
    out: dict[int, Fraction] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        spec = QuerySpec("jobs", (Condition("id", "in", chunk),))
        for job in await client.backend.find(spec):
            r = job.resources
            out[job.id] = Fraction(r.num_nodes, r.node_packing_count)
    return out
