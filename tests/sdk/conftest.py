"""SDK fixtures: a connected client (current for the class-level API), a running relay, a site,
and ``drive`` to move jobs through their states the way the site agent and launcher will."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from support.driving import BackendJobs, Drive, drive_jobs
from support.gateway import serving

from balsam_mq.broker import Topology
from balsam_mq.broker.declare import declare_exchange, declare_queue
from balsam_mq.domain import Actor, Event, JobState, decode_events
from balsam_mq.processors.hook_worker import HookOutcome, call_hook
from balsam_mq.sdk import (
    ApplicationDefinition,
    Client,
    MemoryBackend,
    Site,
    connect,
    use_client,
)
from balsam_mq.sdk.persist import prepare_views
from balsam_mq.settings import Settings
from balsam_mq.store import Store

S = JobState


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every SDK test runs on each backend it can: ``either`` tests in memory, directly and
    through a gateway; ``client`` tests directly and through a gateway (tests marked
    ``direct_only`` directly only)."""
    if "either" in metafunc.fixturenames:
        kinds = ["memory", "direct", "http"]
    elif "client" in metafunc.fixturenames:
        kinds = ["direct", "http"]
    else:
        return
    if metafunc.definition.get_closest_marker("direct_only"):
        kinds.remove("http")
    metafunc.parametrize("backend", kinds)


@pytest.fixture
async def client(
    backend: str, settings: Settings, store: Store, topology: Topology
) -> AsyncIterator[Client]:
    """The SDK client of every SDK test, made current: once on MongoDB and RabbitMQ
    directly, once through a gateway (as a user who owns what the test creates)."""
    if backend == "direct":
        async with connect(settings) as c:
            yield c
        return
    await store.users.create("tester")
    token = (await store.users.issue_token("tester")).text
    async with serving(settings) as url, connect(settings, gateway_url=url, token=token) as c:
        yield c


@pytest.fixture
async def site(client: Client) -> Site:
    """The site "polaris" of the seed's examples."""
    return await Site.objects.create(name="polaris", path="/sites/polaris")


@pytest.fixture
async def memory() -> AsyncIterator[Client]:
    """A client on the in-memory backend, current for the test: SDK logic, no services."""
    client = Client(MemoryBackend())
    async with use_client(client):
        yield client
    await client.aclose()


@pytest.fixture
async def memory_site(memory: Client) -> Site:
    """The site "polaris", in memory."""
    return await Site.objects.create(name="polaris", path="/sites/polaris")


@pytest.fixture
def either(backend: str, request: pytest.FixtureRequest) -> tuple[Client, Site, Drive]:
    """The client (current), the site "polaris" and ``drive``: in memory, on the real stack
    directly and through a gateway. For tests of what every backend must do alike
    (queries, above all)."""
    if backend == "memory":
        names = ("memory", "memory_site", "memory_drive")
    else:
        names = ("client", "site", "drive")
    client, site, drive = (request.getfixturevalue(name) for name in names)
    return client, site, drive


@pytest.fixture
def memory_drive(memory: Client) -> Drive:
    """``drive`` for jobs in memory."""

    async def run(job_ids: Sequence[int], to: JobState, **kw: Any) -> None:
        await drive_jobs(BackendJobs(memory.backend), job_ids, to, **kw)

    return run


Listen = Callable[..., Any]


@pytest.fixture
def listen(amqp: AbstractRobustConnection, topology: Topology) -> Listen:
    """``async with listen("app.1.synced") as events: await events.get()``: a private queue
    bound to routing keys, declared before the test acts."""

    @asynccontextmanager
    async def open_listener(*keys: str) -> AsyncIterator[asyncio.Queue[Event]]:
        channel = await amqp.channel()
        await declare_exchange(channel, topology.events)
        queue = await declare_queue(channel, topology.private(uuid.uuid4().hex, keys))
        received: asyncio.Queue[Event] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            for event in decode_events(message.body):
                await received.put(event)

        await queue.consume(on_message, no_ack=True)
        try:
            yield received
        finally:
            await channel.close()

    return open_listener


CommitHook = Callable[..., Awaitable[HookOutcome]]


@pytest.fixture
def commit_hook(store: Store) -> CommitHook:
    """Run one hook the way the site agent will: load the stored class, call the hook in a
    worker thread (no event loop), then commit its transition and the jobs it created in
    one transaction."""

    async def run(app_name: str, job_id: int, hook: str, by: Actor) -> HookOutcome:
        document = await store.jobs.get(job_id)
        site = await store.sites.get(document.site_id)
        cls = (await ApplicationDefinition.load_by_site(site.id))[app_name]
        outcome = await anyio.to_thread.run_sync(call_hook, cls, document, hook)
        new_jobs = await prepare_views(outcome.created_jobs())

        async def create(session: Any) -> None:
            if new_jobs:
                await store.jobs.create_many(new_jobs, session=session)

        change = outcome.change(document.state, by)
        if change is not None:
            result = await store.jobs.transition([change], extra=create)
            assert result.all_moved, result.unmoved
        return outcome

    return run
