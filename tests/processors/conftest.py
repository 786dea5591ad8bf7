"""Fixtures for site-agent tests: a site, an in-process agent, and a stand-in launcher.

The stand-in launcher is a real consumer of the site's runnable queue that claims jobs
exactly as the launcher does (conditional transition to RUNNING) and then reports the
outcome a test chooses, so agent tests do not depend on running real processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import SiteEnv, StandInLauncher
from aio_pika.abc import AbstractRobustConnection

from balsam_mq.broker import Consumer, Topology
from balsam_mq.domain import Site
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store


@pytest.fixture
async def site(store: Store, tmp_path: Path) -> SiteEnv:
    created = await store.sites.create(Site(name="polaris", path=str(tmp_path / "site")))
    assert created.id is not None
    return SiteEnv(
        created, SiteDirectory.create(tmp_path / "site", name="polaris", site_id=created.id)
    )


@pytest.fixture
async def start_agent(
    store: Store, amqp: AbstractRobustConnection, topology: Topology, site: SiteEnv
) -> AsyncIterator[Callable[..., Awaitable[SiteAgent]]]:
    running: list[tuple[SiteAgent, asyncio.Task[None]]] = []

    async def start(settings_yml: str = "", **options: Any) -> SiteAgent:
        config = parse_config(f"site_id: {site.id}\nname: polaris\n{settings_yml}")
        options.setdefault("window", 0.01)
        agent = SiteAgent(store, amqp, topology, site.site, site.dir, config, **options)
        task = asyncio.create_task(agent.run())
        running.append((agent, task))
        return agent

    yield start
    for agent, task in running:
        await agent.stop(grace=5)
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def launcher(
    store: Store, amqp: AbstractRobustConnection, topology: Topology, site: SiteEnv
) -> AsyncIterator[StandInLauncher]:
    stand_in = StandInLauncher(store)
    consumer = Consumer(amqp, topology, topology.site(site.id).runnable, stand_in, window=0.01)
    task = asyncio.create_task(consumer.run())
    yield stand_in
    await consumer.stop(grace=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
