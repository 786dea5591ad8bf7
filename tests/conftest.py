"""Real-service test harness: one mongod replica set per session, RabbitMQ, isolation per test.

Every test gets its own MongoDB database and RabbitMQ namespace (both removed after
it), so tests never see each other's data. ``BALSAM_MONGODB_URL`` / ``BALSAM_AMQP_URL``
point the suite at existing services instead.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import AMQPError
from support.broker_control import broker_restored  # noqa: F401  (a fixture for every folder)
from support.databases import DatabasePool
from support.driving import Drive, drive_jobs
from support.gateway import serving
from support.services import free_port, start_mongod
from support.watchdog import TeardownWatchdog

from balsam_mq import stack
from balsam_mq.broker import Topology, build_topology, delete_namespace, open_amqp
from balsam_mq.domain import JobState
from balsam_mq.relay import Relay
from balsam_mq.sdk import Client, connect
from balsam_mq.settings import Settings, load_settings
from balsam_mq.store import Store, open_store


def pytest_configure(config: pytest.Config) -> None:
    # a failed test's teardown is watched by nobody else (support/watchdog.py)
    config.pluginmanager.register(TeardownWatchdog(limit_s=120), "teardown-watchdog")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Every ``async def`` test runs on anyio's asyncio backend."""
    if collector.istestfunction(obj, name) and inspect.iscoroutinefunction(obj):  # type: ignore[attr-defined]
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def session_mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real mongod replica-set primary for the session (or ``BALSAM_MONGODB_URL``)."""
    if os.environ.get("BALSAM_MONGODB_URL"):
        yield os.environ["BALSAM_MONGODB_URL"]
        return
    root: Path = tmp_path_factory.mktemp("mongod")
    port = free_port()
    pid = start_mongod(root, port)
    try:
        yield stack.mongo_url(port)
    finally:
        stack.stop_mongod(pid)


@pytest.fixture(scope="session")
def mongo_url(session_mongo_url: str) -> str:
    """The tests' mongod (a module may give its tests one each, under this name)."""
    return session_mongo_url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """RabbitMQ (``BALSAM_AMQP_URL`` or the local default), started if installed and down."""
    url = os.environ.get("BALSAM_AMQP_URL") or Settings.model_fields["amqp_url"].default
    stack.ensure_rabbitmq(url)
    return str(url)


@pytest.fixture(scope="session")
def databases(session_mongo_url: str) -> Iterator[DatabasePool]:
    """Databases emptied after each test for the next (``support.databases``)."""
    pool = DatabasePool(session_mongo_url)
    yield pool
    anyio.run(pool.drop_all)


@pytest.fixture
def settings(
    mongo_url: str,
    amqp_url: str,
    databases: DatabasePool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Settings:
    """The test's own database (empty, with the schema if it was used before) and
    namespace. A test parametrized indirectly over ``settings`` with ``"classic"`` or
    ``"quorum"`` gets that queue type (else ``BALSAM_QUEUE_TYPE`` or the default)."""
    tag = uuid.uuid4().hex[:12]
    queue_type = {"queue_type": request.param} if hasattr(request, "param") else {}
    return load_settings(
        mongodb_url=mongo_url,
        amqp_url=amqp_url,
        db=databases.take(mongo_url),
        namespace=f"t{tag}",
        stack_dir=tmp_path / "stack",
        **queue_type,
    )


@pytest.fixture
async def store(settings: Settings, databases: DatabasePool) -> AsyncIterator[Store]:
    async with open_store(settings.mongodb_url, settings.db) as st:
        yield st
        await databases.give_back(settings.mongodb_url, st.db)


@pytest.fixture
def drive(store: Store) -> Drive:
    """``await drive(job_ids, JobState.JOB_FINISHED)``: jobs moved along their normal route
    the way the site agent and launcher move them (``support.driving``)."""

    async def run(job_ids: Sequence[int], to: JobState, **kw: Any) -> None:
        await drive_jobs(store, job_ids, to, **kw)

    return run


@pytest.fixture
async def amqp(settings: Settings) -> AsyncIterator[AbstractRobustConnection]:
    async with open_amqp(settings.amqp_url) as connection:
        yield connection


@pytest.fixture
async def topology(
    settings: Settings, store: Store, amqp: AbstractRobustConnection
) -> AsyncIterator[Topology]:
    """The test's namespace; its queues and exchanges are deleted afterwards."""
    topo = build_topology(settings.namespace, quorum=settings.quorum)
    yield topo
    site_ids = set(await store.db["events"].distinct("site_id"))
    site_ids |= set(await store.db["sites"].distinct("_id"))
    try:
        await _delete_namespace(amqp, topo, sorted(site_ids))
    except (RuntimeError, AMQPError):  # the test cut the broker: this connection may be down yet
        async with open_amqp(settings.amqp_url) as fresh:
            await _delete_namespace(fresh, topo, sorted(site_ids))


async def _delete_namespace(
    connection: AbstractRobustConnection, topo: Topology, site_ids: list[int]
) -> None:
    channel = await connection.channel()
    try:
        await delete_namespace(channel, topo, site_ids)
    finally:
        await channel.close()


@pytest.fixture
async def client(settings: Settings, store: Store, topology: Topology) -> AsyncIterator[Client]:
    """An SDK client made current for the test (its database and namespace are the test's)."""
    async with connect(settings) as c:
        yield c


@pytest.fixture
async def gateway(settings: Settings, store: Store, topology: Topology) -> AsyncIterator[str]:
    """The URL of a gateway serving the test's database and namespace (no relay of its own:
    tests that need events published ask for ``relay``)."""
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def token(store: Store) -> str:
    """A token of the user "alice" (created for the test)."""
    await store.users.create("alice")
    return (await store.users.issue_token("alice")).text


@pytest.fixture
async def http_client(settings: Settings, gateway: str, token: str) -> AsyncIterator[Client]:
    """An SDK client on the gateway as "alice", made current for the test."""
    async with connect(settings, gateway_url=gateway, token=token) as c:
        yield c


@pytest.fixture
async def relay(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[Relay]:
    """The outbox relay, publishing every event of the test's database while the test runs."""
    relay = Relay(store, amqp, topology, max_await_ms=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        yield relay
        tg.cancel_scope.cancel()
