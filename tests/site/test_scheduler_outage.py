"""The scheduler service of a site agent lives through a MongoDB outage."""

from __future__ import annotations

from pathlib import Path

import anyio
from support.services import free_port, start_mongod
from support.waiting import until

from balsam_mq import stack
from balsam_mq.domain import Site
from balsam_mq.settings import Settings
from balsam_mq.site.batch_jobs import build_service
from balsam_mq.store import open_store


async def test_scheduler_passes_are_skipped_while_mongod_is_down_and_resume(
    tmp_path: Path, settings: Settings
) -> None:
    port = free_port()
    pid = await anyio.to_thread.run_sync(start_mongod, tmp_path, port)
    try:
        async with open_store(stack.mongo_url(port), "scheduler_outage", timeout_ms=500) as store:
            site = await store.sites.create(Site(name="s", path=str(tmp_path / "site")))
            service = build_service(
                store, site, tmp_path / "site", settings, {"scheduler": {"interval_s": 0.2}}
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                await until(lambda: service.passes >= 1, 30)
                await anyio.to_thread.run_sync(stack.stop_mongod, pid)
                await until(lambda: service.skipped >= 2, 30)  # and the service goes on
                pid = await anyio.to_thread.run_sync(start_mongod, tmp_path, port)
                resumed = service.passes
                await until(lambda: service.passes > resumed, 30)
                tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(stack.stop_mongod, pid)
