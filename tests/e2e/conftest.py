"""End-to-end fixtures: a site with its agent (relay, hooks, reaper), real launchers, the SDK.

Apps are defined inside functions, as in a notebook: the SDK ships them by value, so
launcher children and hook workers need nothing from the test modules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from e2e_helpers import E2E, SETTINGS_YML, SITE

import balsam_mq
from balsam_mq.broker import Topology
from balsam_mq.domain import Site
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.settings import Settings
from balsam_mq.site.config import parse_config
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store


@pytest.fixture
def site_settings() -> str:
    """The settings.yml lines the test's site adds to the defaults (a module may override)."""
    return SETTINGS_YML


@pytest.fixture
async def e2e(
    site_settings: str,
    store: Store,
    amqp: AbstractRobustConnection,
    topology: Topology,
    settings: Settings,
    tmp_path: Path,
) -> AsyncIterator[E2E]:
    site = await store.sites.create(Site(name=SITE, path=str(tmp_path / "site")))
    assert site.id is not None
    site_dir = SiteDirectory.create(tmp_path / "site", name=SITE, site_id=site.id)
    text = site_dir.settings_file.read_text() + site_settings
    site_dir.settings_file.write_text(text)
    config = parse_config(text)
    agent = SiteAgent(store, amqp, topology, site, site_dir, config, window=0.01)
    agent_task = asyncio.create_task(agent.run())
    world = E2E(store, amqp, topology, settings, site, site_dir)
    try:
        async with balsam_mq.connect(settings):
            yield world
    finally:
        for pilot, _task in world.pilots:
            pilot.request_stop("test teardown")
        await asyncio.gather(*(t for _, t in world.pilots), return_exceptions=True)
        for process in world.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        started = time.monotonic()
        await agent.stop(grace=5)
        await asyncio.wait_for(agent_task, 15 - min(10.0, time.monotonic() - started))
