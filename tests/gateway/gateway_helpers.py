"""Helpers of the gateway tests: users with their own SDK clients and raw HTTP clients, and
each user's world (a site, an app, jobs, a batch job)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx

from balsam_mq.sdk import ApplicationDefinition, BatchJob, Client, Job, Site, connect, use_client
from balsam_mq.settings import Settings
from balsam_mq.store import Store


class Adder(ApplicationDefinition):
    """Adds two numbers."""

    site = "home"

    def run(self, x: int, y: int = 1) -> int:
        return x + y


@dataclass
class World:
    """What one user made: ids of their site, app, jobs and batch job."""

    user: str
    token: str
    site_id: int
    app_id: int
    job_ids: list[int]
    batch_job_id: int


async def new_token(store: Store, user: str, expires_in: timedelta | None = None) -> str:
    if user not in {u.name for u in await store.users.all()}:
        await store.users.create(user)
    return (await store.users.issue_token(user, expires_in)).text


@asynccontextmanager
async def sdk_as(settings: Settings, url: str, token: str) -> AsyncIterator[Client]:
    """An SDK client through the gateway with ``token``, current inside the block."""
    async with connect(settings, gateway_url=url, token=token) as client:
        yield client


def http_as(url: str, token: str | None) -> httpx.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)


async def make_world(settings: Settings, store: Store, url: str, user: str, jobs: int = 3) -> World:
    """``user`` with a site "home" (every user may have one of that name), Adder synced
    to it, ``jobs`` Adder jobs and a batch job."""
    token = await new_token(store, user)
    async with sdk_as(settings, url, token) as client, use_client(client):
        site = await Site.objects.create(name="home", path=f"/sites/{user}")
        await Adder.sync()
        made = await Job.objects.bulk_create(
            [Adder.submit(f"add/{i}", x=i, tags={"owner": user}, save=False) for i in range(jobs)]
        )
        batch = await BatchJob.objects.create(site_id=site.id, num_nodes=1, wall_time_min=5)
    assert site.id is not None and batch.id is not None and made[0].app_id is not None
    return World(user, token, site.id, made[0].app_id, [j.id for j in made if j.id], batch.id)
