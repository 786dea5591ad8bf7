"""`balsam-mq dead`: parked messages listed, shown, replayed to their queue, or discarded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from cli_helpers import Cli, World, adders
from support.waiting import until

from balsam_mq.broker import Consumer, Topology
from balsam_mq.domain import Delivery, decode_events


class Refusing:
    """A runnable-queue consumer that cannot handle anything."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle(self, batch: Sequence[Delivery]) -> None:
        self.seen += [e.job_id for d in batch for e in d.events() if e.job_id is not None]
        raise RuntimeError("the launcher cannot read this")


async def _park(
    amqp: AbstractRobustConnection, topology: Topology, world: World, n: int
) -> list[int]:
    """``n`` new jobs whose runnable messages are parked; their ids."""
    assert world.site.id is not None
    spec = topology.site(world.site.id).runnable
    ids = [j.id for j in await adders(n)]
    handler = Refusing()
    consumer = Consumer(amqp, topology, spec, handler, max_attempts=1, window=0.01)
    task = asyncio.create_task(consumer.run())
    await until(lambda: consumer.parked >= n, timeout=30)
    await consumer.stop()
    await task
    return ids


async def test_dead_ls_show_retry_and_purge(
    cli: Cli, world: World, relay: Any, amqp: AbstractRobustConnection, topology: Topology
) -> None:
    assert (await cli.ok("dead", "ls")).stderr.strip() == "no parked messages"
    ids = await _park(amqp, topology, world, 2)

    listed = await cli.json("dead", "ls")
    assert sorted(j for m in listed for j in m["job_ids"]) == sorted(ids)
    first = listed[0]
    assert first["queue"] == topology.site(world.site.id or 0).runnable.name
    assert first["attempts"] == 1
    assert first["site_id"] == world.site.id
    assert first["error"].endswith("RuntimeError: the launcher cannot read this")
    table = (await cli.ok("dead", "ls", "--site", "polaris")).stdout
    assert first["id"] in table and "the launcher cannot read this" in table

    shown = (await cli.ok("dead", "show", first["id"])).stdout
    assert "Traceback" in shown and f"routing key: job.{world.site.id}." in shown

    assert "no parked message nonesuch" in await cli.error("dead", "show", "nonesuch")
    assert "give the ids" in await cli.error("dead", "retry", code=2)
    assert "not both" in await cli.error("dead", "purge", first["id"], "--all", code=2)

    replayed = await cli.ok("dead", "retry", first["id"])
    assert f"replayed 1 message(s) (jobs {first['job_ids'][0]})" in replayed.stderr
    # back on its queue, counted from zero: a consumer gets it again
    again = await _drain(amqp, topology.site(world.site.id or 0).runnable.name)
    assert again == first["job_ids"]
    assert [m["id"] for m in await cli.json("dead", "ls")] == [listed[1]["id"]]

    purged = await cli.ok("dead", "purge", "--all", "--yes")
    assert "discarded 1 message(s)" in purged.stderr
    assert await cli.json("dead", "ls") == []


async def _drain(amqp: AbstractRobustConnection, queue_name: str) -> list[int]:
    """The job ids of the messages waiting in ``queue_name`` (taken off it)."""
    channel = await amqp.channel()
    queue = await channel.get_queue(queue_name)
    out: list[int] = []
    while (message := await queue.get(fail=False)) is not None:
        out += [e.job_id for e in decode_events(message.body) if e.job_id is not None]
        await message.ack()
    await channel.close()
    return out
