"""A wait outlives a MongoDB outage: the client reads again until the store answers."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from aio_pika.abc import AbstractRobustConnection
from support.driving import drive_jobs
from support.services import free_port, start_mongod
from support.waiting import until

from balsam_mq import ApplicationDefinition, Site, stack
from balsam_mq.broker import Topology
from balsam_mq.domain import JobState
from balsam_mq.sdk import Client, use_client
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.store import open_store


class Adder(ApplicationDefinition):
    site = "outage"

    def run(self, x: int, y: int) -> int:
        return x + y


async def test_a_result_awaited_while_mongod_restarts_arrives(
    tmp_path: Path,
    amqp: AbstractRobustConnection,
    topology: Topology,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()

    def start() -> int:
        return start_mongod(tmp_path, port)

    pid = await anyio.to_thread.run_sync(start)
    try:
        async with open_store(stack.mongo_url(port), "outage", timeout_ms=300) as store:
            client = Client(DirectBackend(store, amqp, topology))
            async with use_client(client):
                await Site.objects.create(name="outage")
                job = await Adder.submit("add/1", x=2, y=3)
                assert job.id is not None
                await drive_jobs(store, [job.id], JobState.JOB_FINISHED, result=5)
                await anyio.to_thread.run_sync(stack.stop_mongod, pid)
                results: list[int] = []
                caplog.set_level(logging.WARNING, logger="balsam_mq.sdk.futures")

                async def await_result() -> None:  # the job as loaded before the outage
                    results.append(await job.result(timeout=60))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(await_result)

                    async def told() -> bool:
                        return "trying again until it answers" in caplog.text

                    await until(told, 30)
                    pid = await anyio.to_thread.run_sync(start)
                assert results == [5]
            await client.aclose()
    finally:
        await anyio.to_thread.run_sync(stack.stop_mongod, pid)
