"""CLI fixtures: the test's services in the environment, a site with two apps made through the
SDK, a running relay, and ``cli`` to invoke `balsam-mq` in a worker thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aio_pika.abc import AbstractRobustConnection
from cli_helpers import Cli, World, make_world

from balsam_mq.broker import Topology
from balsam_mq.relay import Relay
from balsam_mq.sdk import Client, connect
from balsam_mq.settings import Settings
from balsam_mq.store import Store


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test's MongoDB database and RabbitMQ namespace, for `load_settings()`."""
    values = {
        "BALSAM_MONGODB_URL": settings.mongodb_url,
        "BALSAM_AMQP_URL": settings.amqp_url,
        "BALSAM_DB": settings.db,
        "BALSAM_NAMESPACE": settings.namespace,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("TTY_COMPATIBLE", "FORCE_COLOR", "BALSAM_SITE"):
        monkeypatch.delenv(key, raising=False)
    return values


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    return Cli()


@pytest.fixture
async def client(settings: Settings, store: Store, topology: Topology) -> AsyncIterator[Client]:
    async with connect(settings) as c:
        yield c


@pytest.fixture
async def world(client: Client, tmp_path: Path) -> World:
    """Site "polaris" (its directory under tmp_path) with the apps Adder and Sim."""
    return await make_world(tmp_path)


@pytest.fixture
async def relay(
    store: Store, amqp: AbstractRobustConnection, topology: Topology
) -> AsyncIterator[Relay]:
    """The outbox relay, publishing the test database's events while the test runs."""
    relay = Relay(store, amqp, topology, max_await_ms=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        yield relay
        tg.cancel_scope.cancel()
