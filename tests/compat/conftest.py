"""Fixtures for running the examples of Balsam's user guide twice: as Balsam writes them, on
``balsam_mq.blocking`` in a thread with no event loop (a script), and with ``await`` on the
async SDK; ``drive`` moves jobs through their states, ``launcher`` runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from compat_helpers import Drive, Example, hello

from balsam_mq import App, ApplicationDefinition, EventLog, Job
from balsam_mq.domain import JobState
from balsam_mq.sdk import Client, Site
from balsam_mq.settings import Settings


@pytest.fixture(params=["blocking", "async"])
def example(request: pytest.FixtureRequest, settings: Settings, client: Client) -> Example:
    return Example(request.param, settings)


@pytest.fixture
async def theta_gpu(client: Client) -> Site:
    """The site the user guide's job examples submit to."""
    return await Site.objects.create(name="theta-gpu", path="/projects/theta-gpu")


@pytest.fixture
async def hello_app(theta_gpu: Site) -> App:
    """Hello, synced at theta-gpu (the examples' ``app_id=123``, ``app_id="Hello"``)."""
    await hello().sync()
    return await App.objects.get(site_id=theta_gpu.id, name="Hello")


async def _run_each(feed: Any, drive: Drive) -> None:
    async for event in feed:
        job = await Job.objects.get(id=event.job_id)
        app = await App.objects.get(id=job.app_id)
        cls = (await ApplicationDefinition.load_by_site(job.site_id))[app.name]
        value = cls(job)._run_with(job.parameters)
        await drive([job.id], JobState.JOB_FINISHED, result=value)


@pytest.fixture
async def launcher(client: Client, relay: object, drive: Drive) -> AsyncIterator[None]:
    """A launcher stand-in for the examples that wait for results: every job that becomes
    runnable while the test runs has its app's ``run()`` called on its parameters (as a
    launcher's worker would) and is driven to JOB_FINISHED with the value."""
    async with (
        EventLog.objects.follow(to_state="PREPROCESSED") as feed,
        aclosing(feed.__aiter__()) as events,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_run_each, events, drive)
        yield
        tg.cancel_scope.cancel()
