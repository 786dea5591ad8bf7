"""A connection given several nodes (``BALSAM_AMQP_URL`` with commas) opens on the first
that answers and, when its node goes, goes on over another: its channels, queues and
consumers come back there without the caller doing anything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from support.services import free_port
from support.waiting import until

from balsam_mq.broker import open_amqp
from balsam_mq.errors import BrokerError, ConfigError
from balsam_mq.rabbit_node import TOOLS, RabbitNode
from balsam_mq.settings import load_settings

needs_rabbitmq_tools = pytest.mark.skipif(
    not (TOOLS / "rabbitmq-server").exists(), reason="needs RabbitMQ installed on this machine"
)


@pytest.fixture
def second_node(tmp_path: Path) -> Iterator[RabbitNode]:
    """A RabbitMQ node of the test's own beside the main one (not clustered with it)."""
    node = RabbitNode(tmp_path / "node", f"bmqt{uuid.uuid4().hex[:8]}", free_port(), free_port())
    node.start()
    try:
        yield node
    finally:
        node.stop()


def dead_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


async def test_the_first_node_that_answers_takes_the_connection(amqp_url: str) -> None:
    async with open_amqp(f"{dead_url()}, {amqp_url}") as amqp:
        channel = await amqp.channel()
        await channel.close()


async def test_no_node_answering_is_one_error_naming_each() -> None:
    first, second = dead_url(), dead_url()
    with pytest.raises(BrokerError, match="cannot reach RabbitMQ") as caught:
        async with open_amqp(f"{first},{second}", timeout=2):
            pass
    for url in (first, second):
        assert url.split("@")[1].rstrip("/") in str(caught.value)
    assert "guest:guest" not in str(caught.value)  # no password in messages


def test_every_address_of_the_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="BALSAM_AMQP_URL: 'http://x' must start with amqp://"):
        load_settings(amqp_url="amqp://guest:guest@a:5672/,http://x")


@needs_rabbitmq_tools
async def test_a_lost_node_is_left_for_the_next_with_queues_and_consumers(
    second_node: RabbitNode, amqp_url: str
) -> None:
    queue_name = f"failover-{uuid.uuid4().hex[:8]}"
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(message.body)

    async with open_amqp(f"{second_node.url},{amqp_url}") as amqp:
        channel = await amqp.channel()
        queue = await channel.declare_queue(queue_name, auto_delete=True)
        await queue.consume(on_message)
        await channel.default_exchange.publish(aio_pika.Message(b"one"), routing_key=queue_name)
        assert await asyncio.wait_for(received.get(), 10) == b"one"
        assert queue_name in second_node.ctl("list_queues", "name")  # on the second node

        await asyncio.to_thread(second_node.stop)

        async def published() -> bool:  # once the channel is back, on the other node
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(b"two"), routing_key=queue_name
                )
            except Exception:
                return False
            return True

        await until(published, 30, interval=0.1)
        assert await asyncio.wait_for(received.get(), 30) == b"two"
        await channel.close()
