"""A real gateway for tests: uvicorn serving ``create_app`` on a free port, in the test's own
event loop (so the test and the gateway share nothing but HTTP)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from balsam_mq.gateway import create_app
from balsam_mq.settings import Settings
from support.services import free_port


@asynccontextmanager
async def serving(
    settings: Settings, *, relay: bool = False, port: int | None = None
) -> AsyncIterator[str]:
    """The gateway's URL while it serves (on ``port``, else a free one)."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings, relay=relay),
        host="127.0.0.1",
        port=port,
        log_level=logging.WARNING,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
