"""``EventLog.objects.follow``: history, then live events filtered by the query, each once."""

from __future__ import annotations

from contextlib import aclosing
from datetime import timedelta
from typing import Any, cast

import anyio
import pytest

from balsam_mq import ApplicationDefinition, EventLog, Job
from balsam_mq.domain import Event, JobState, utcnow
from balsam_mq.domain.queries import Condition, QuerySpec, matches
from balsam_mq.errors import QueryError
from balsam_mq.relay import Relay
from balsam_mq.sdk import Client, Site
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.sdk.feed import EventFeed, routing_keys

S = JobState


class Sim(ApplicationDefinition):
    site = "polaris"
    command_template = "sim {{ n }}"


async def take(feed: EventFeed[Any], n: int) -> list[Any]:
    got: list[Any] = []
    with anyio.fail_after(20):
        async with aclosing(feed.batches()) as batches:
            async for batch in batches:
                got += batch
                if len(got) >= n:
                    return got
    return got


async def test_history_then_live_events_once_each(client: Client, site: Site, relay: Relay) -> None:
    jobs = await Job.objects.bulk_create([Sim.submit(f"s/{i}", n=i, save=False) for i in range(3)])
    async with EventLog.objects.follow(history=2, kind="job") as feed:
        history = await take(feed, 2)
        # the two latest: one transaction wrote the jobs' steps job by job, each job's
        # in order (creation passed through to PREPROCESSED)
        assert [(e.job_id, e.to_state) for e in history] == [
            (3, "STAGED_IN"),
            (3, "PREPROCESSED"),
        ]
        await Job.objects.filter(id=[1, 2]).update(state="FAILED")
        live = await take(feed, 2)
    # the relay published the creation events too (maybe after the feed opened): not again
    assert sorted((e.job_id, e.from_state, e.to_state) for e in live) == [
        (1, "PREPROCESSED", "FAILED"),
        (2, "PREPROCESSED", "FAILED"),
    ]
    assert all(isinstance(e, EventLog) for e in history + live)
    assert jobs[0].id == 1


async def test_filters_hold_for_live_events(client: Client, site: Site, relay: Relay) -> None:
    await Site.objects.create(name="theta")

    class Far(ApplicationDefinition):
        site = "theta"
        command_template = "far"

    await Job.objects.bulk_create([Sim.submit("a", n=1, save=False), Far.submit("b", save=False)])
    async with EventLog.objects.follow(site="polaris", to_state="FAILED") as feed:
        await Job.objects.filter(id=2).update(state="FAILED")  # other site
        await Job.objects.filter(id=1).update(**{"tags.x": "1"})  # no event
        await Job.objects.filter(id=1).update(state="FAILED")
        (event,) = await take(feed, 1)
    assert (event.job_id, event.to_state, event.by) == (1, "FAILED", "user")


async def test_a_feed_is_used_inside_its_block(client: Client, site: Site) -> None:
    feed = EventLog.objects.follow()
    with pytest.raises(QueryError, match="inside `async with"):
        await anext(feed.batches())
    with pytest.raises(QueryError, match="history must be >= 0"):
        EventLog.objects.follow(history=-1)


def test_routing_keys_are_as_narrow_as_the_filters() -> None:
    def keys(*conditions: Condition) -> list[str]:
        return routing_keys(QuerySpec("events", conditions))

    assert keys() == ["*.*.*.#"]  # '.#': quiet events too
    assert keys(Condition("kind", "eq", "job"), Condition("site_id", "in", [2, 1])) == [
        "job.1.*.#",
        "job.2.*.#",
    ]
    assert keys(Condition("to_state", "eq", S.FAILED), Condition("job_id", "eq", 3)) == [
        "*.*.FAILED.#"
    ]
    assert keys(Condition("site_id", "in", [1, 2]), Condition("site_id", "eq", 2)) == ["*.2.*.#"]
    assert keys(Condition("site_id", "in", list(range(100)))) == ["*.*.*.#"]  # too many
    assert keys(Condition("site_id", "ne", 1)) == ["*.*.*.#"]


def test_matches_gives_conditions_the_store_meaning() -> None:
    event = Event(site_id=1, job_id=7, from_state="READY", to_state="FAILED", seq=2)
    values = event.model_dump()
    assert matches(
        [Condition("job_id", "in", [6, 7]), Condition("to_state", "eq", S.FAILED)], values
    )
    assert not matches([Condition("job_id", "nin", [7])], values)
    assert matches([Condition("seq", "gte", 2), Condition("seq", "lt", 3)], values)
    assert not matches([Condition("batch_job_id", "gt", 0)], values)  # None has no order
    assert matches([Condition("from_state", "contains", "EAD")], values)
    assert matches([Condition("timestamp", "gt", utcnow() - timedelta(minutes=1))], values)
    tags = {"tags": {"run": "H2O", "n": "1"}, "parent_ids": [3, 4]}
    assert matches([Condition("tags", "has", {"run": "H2O", "n": None})], tags)
    assert not matches([Condition("tags", "has", {"run": "CO2"})], tags)
    assert matches([Condition("parent_ids", "in", [4, 9])], tags)


@pytest.mark.direct_only  # reconnects this client's RabbitMQ connection
async def test_after_a_reconnection_the_store_is_read_again(
    client: Client, site: Site, relay: Relay
) -> None:
    await Job.objects.bulk_create([Sim.submit(f"s/{i}", n=i, save=False) for i in range(2)])
    async with EventLog.objects.follow(kind="job", to_state="FAILED") as feed:
        await Job.objects.filter(id=1).update(state="FAILED")
        (first,) = await take(feed, 1)
        # what a broker restart looks like to the client
        await cast(DirectBackend, client.backend).connection.reconnect()
        await Job.objects.filter(id=2).update(state="FAILED")
        (second,) = await take(feed, 1)  # read from the store, or received: once either way
        await Job.objects.filter(id=1).update(state="RESTART_READY")
        await Job.objects.filter(id=1).update(state="FAILED")
        (third,) = await take(feed, 1)  # live again after the re-read
    # creation took 3 steps (READY, STAGED_IN, PREPROCESSED)
    assert [(e.job_id, e.seq) for e in (first, second, third)] == [(1, 4), (2, 4), (1, 6)]
