"""The event stream and the SDK's futures through the gateway: resumable without a missed or
repeated event, each user's own, a token that expires mid-wait refused clearly, and many
remote clients at once each getting exactly their own results."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from gateway_helpers import Adder, World, http_as, make_world, new_token, sdk_as
from support.driving import Drive
from support.gateway import serving
from support.services import free_port

from balsam_mq.domain import JobState
from balsam_mq.domain.serialization import deserialize_parameters
from balsam_mq.errors import AuthError
from balsam_mq.relay import Relay
from balsam_mq.sdk import Job, Site, use_client
from balsam_mq.sdk.http_stream import sse_messages
from balsam_mq.settings import Settings
from balsam_mq.store import Store

S = JobState


@pytest.fixture
async def alice(settings: Settings, store: Store, gateway: str) -> World:
    return await make_world(settings, store, gateway, "alice", jobs=6)


def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, str]]:
    """``(event, id, data)`` of each message of a Server-Sent Events response."""
    return sse_messages(response.aiter_lines())


async def read_events(
    client: httpx.AsyncClient, params: dict[str, Any], count: int, last: str | None = None
) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """Kinds of the messages up to the ``count``-th event (with ``count=0``, the first two
    messages); the last id seen."""
    kinds: list[str] = []
    events: list[dict[str, Any]] = []
    headers = {} if last is None else {"Last-Event-ID": last}
    with anyio.fail_after(20):
        async with client.stream("GET", "/events/stream", params=params, headers=headers) as r:
            assert r.status_code == 200, await r.aread()
            async for kind, event_id, data in sse(r):
                kinds.append(kind)
                last = event_id or last
                if kind == "event":
                    events.append(json.loads(data))
                if len(events) == count and (count or len(kinds) == 2):
                    break
    return kinds, events, last


async def test_a_dropped_stream_resumes_after_its_last_event(
    gateway: str, store: Store, alice: World, relay: Relay, drive: Drive
) -> None:
    params = {"site_id": str(alice.site_id), "kind": "job"}
    first_jobs, later_jobs = alice.job_ids[:3], alice.job_ids[3:]
    async with http_as(gateway, alice.token) as client:
        opened: asyncio.Event = asyncio.Event()
        got: list[Any] = []

        async def first_connection() -> None:
            async with client.stream("GET", "/events/stream", params=params) as r:
                async for kind, event_id, data in sse(r):
                    if kind == "open":
                        opened.set()
                    elif kind == "event":
                        got.append((event_id, json.loads(data)))
                        if len(got) == 3:  # then the line drops
                            return

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_connection)
            await opened.wait()
            await drive(first_jobs, S.RUNNING)
        last = got[-1][0]
        # events committed while the client was away
        await drive(later_jobs, S.RUNNING)
        await drive(first_jobs, S.JOB_FINISHED)
        created = {"CREATED", "READY", "STAGED_IN", "PREPROCESSED"}
        expected = len(
            [
                e
                async for e in store.events.iterate(site_id=alice.site_id)
                if e.to_state not in created
            ]
        )
        kinds, rest, _ = await read_events(client, params, expected - len(got), last)
        assert kinds[0] == "open" and "gap" not in kinds
        ids = [e["id"] for _, e in got] + [e["id"] for e in rest]
        assert len(ids) == len(set(ids)) == expected  # nothing missed, nothing repeated
        # a stream that cannot be resumed says so first: the client re-reads the log
        kinds, _, _ = await read_events(client, params, 0, "0123456789abcdef:5")
        assert kinds[:2] == ["open", "gap"]


async def test_a_stream_carries_only_the_callers_events_and_its_filters(
    settings: Settings, gateway: str, store: Store, alice: World, relay: Relay, drive: Drive
) -> None:
    bob = await make_world(settings, store, gateway, "bob", jobs=2)
    async with http_as(gateway, bob.token) as client:
        everything: list[Any] = []
        opened = asyncio.Event()

        async def listen() -> None:
            async with client.stream(
                "GET", "/events/stream", params={"tags": "owner:bob", "to_state": "RUNNING"}
            ) as r:
                async for kind, _, data in sse(r):
                    if kind == "open":
                        opened.set()
                    if kind == "event":
                        everything.append(json.loads(data))
                        if len(everything) == 2:
                            return

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            with anyio.fail_after(20):
                await opened.wait()
                await drive(alice.job_ids, S.RUNNING)  # alice's: never seen by bob
                await drive(bob.job_ids, S.RUNNING)
    assert sorted(e["job_id"] for e in everything) == sorted(bob.job_ids)
    assert {e["to_state"] for e in everything} == {"RUNNING"}


async def test_a_token_expiring_during_as_completed_ends_it_with_a_clear_error(
    settings: Settings, gateway: str, store: Store, alice: World, relay: Relay
) -> None:
    short = await new_token(store, "alice", timedelta(seconds=2))
    async with sdk_as(settings, gateway, short) as client, use_client(client):
        jobs = await Job.objects.filter(id__in=alice.job_ids).all()
        with pytest.raises(AuthError, match="expired"):
            async for _ in Job.objects.as_completed(jobs, timeout=60):
                pass


async def test_a_remote_as_completed_rides_out_a_gateway_restart(
    settings: Settings, store: Store, relay: Relay, drive: Drive
) -> None:
    port = free_port()
    first = serving(settings, port=port)
    url = await first.__aenter__()
    world = await make_world(settings, store, url, "alice", jobs=3)
    got: list[int] = []
    one_seen, all_seen = asyncio.Event(), asyncio.Event()
    async with sdk_as(settings, url, world.token) as client, use_client(client):
        jobs = await Job.objects.filter(id__in=world.job_ids).all()
        await drive(world.job_ids[:1], S.JOB_FINISHED, result=0)

        async def wait() -> None:
            async for job in Job.objects.as_completed(jobs, timeout=60):
                got.append(await job.result())
                one_seen.set()
            all_seen.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            with anyio.fail_after(20):
                await one_seen.wait()
            await first.__aexit__(None, None, None)  # the gateway goes: the stream drops
            for n, job_id in enumerate(world.job_ids[1:], 1):  # jobs end while it is away
                await drive([job_id], S.JOB_FINISHED, result=n)
            async with serving(settings, port=port):  # a new gateway: the stream is unknown
                with anyio.fail_after(30):
                    await all_seen.wait()
    assert sorted(got) == [0, 1, 2]


async def test_fifty_remote_clients_each_get_exactly_their_own_results(
    settings: Settings, gateway: str, store: Store, relay: Relay, drive: Drive
) -> None:
    users = [f"user{u}" for u in range(5)]
    tokens = {}
    for user in users:
        tokens[user] = await new_token(store, user)
        async with sdk_as(settings, gateway, tokens[user]) as client, use_client(client):
            await Site.objects.create(name="home", path=f"/sites/{user}")
            await Adder.sync()

    async def launcher(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Finishes every runnable job with x + y, as a launcher running Adder would,
        woken by the creation events (the events change stream, open before any job)."""
        creation = "PREPROCESSED"  # the last step of a creation's document
        match = {"operationType": "insert", "fullDocument.then.to_state": creation}
        async with await store.db["events"].watch([{"$match": match}]) as stream:
            task_status.started()
            async for change in stream:
                job = await store.jobs.get(change["fullDocument"]["job_id"])
                params = deserialize_parameters(job.parameters)
                await drive([job.id], S.JOB_FINISHED, result=params["x"] + params["y"])

    results: dict[int, list[int]] = {}

    async def remote(n: int) -> None:
        user = users[n % len(users)]
        async with sdk_as(settings, gateway, tokens[user]) as client, use_client(client):
            jobs = await Job.objects.bulk_create(
                [Adder.submit(f"c{n}/{k}", x=1000 * n, y=k, save=False) for k in range(2)]
            )
            got = [await job.result() async for job in Job.objects.as_completed(jobs, timeout=60)]
            results[n] = sorted(got)
            mine = await Job.objects.filter(id__gte=0).values("owner")
            assert {row["owner"] for row in mine} == {user}

    async with anyio.create_task_group() as tg:
        await tg.start(launcher)
        with anyio.fail_after(120):
            async with anyio.create_task_group() as clients:
                for n in range(50):
                    clients.start_soon(remote, n)
        tg.cancel_scope.cancel()
    assert results == {n: [1000 * n, 1000 * n + 1] for n in range(50)}
