"""Fixtures for launcher tests: ``world``, a site in the store with the relay running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from launcher_helpers import World

from balsam_mq.broker import Topology
from balsam_mq.domain import Site
from balsam_mq.relay import Relay
from balsam_mq.store import Store


@pytest.fixture
async def world(
    store: Store, amqp: AbstractRobustConnection, topology: Topology, tmp_path: Path
) -> AsyncIterator[World]:
    w = World(store, amqp, topology, tmp_path)
    w.site = await store.sites.create(Site(name="testsite", path=str(tmp_path / "site")))
    w.data.mkdir(parents=True)
    relay = asyncio.create_task(Relay(store, amqp, topology).run())
    try:
        yield w
    finally:
        for pilot, _task in w.pilots:
            pilot.request_stop("test teardown")
        await asyncio.gather(*(t for _, t in w.pilots), return_exceptions=True)
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
