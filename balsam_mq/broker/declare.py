"""Idempotent declaration of the topology on a channel."""

from __future__ import annotations

from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from balsam_mq.broker.topology import DELAY_LEVELS, ExchangeSpec, QueueSpec, Topology


async def declare_exchange(channel: AbstractChannel, spec: ExchangeSpec) -> AbstractExchange:
    return await channel.declare_exchange(spec.name, ExchangeType(spec.type), durable=True)


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    """Declare ``spec`` (and its exchange's existence is assumed) and bind its keys."""
    arguments: dict[str, Any] = {}
    if spec.quorum:
        arguments["x-queue-type"] = "quorum"
    if spec.dead_letter_exchange:
        arguments["x-dead-letter-exchange"] = spec.dead_letter_exchange
        if spec.quorum:  # a deferred message leaves its delay queue only once it is routed on
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
    if spec.message_ttl_ms is not None:
        arguments["x-message-ttl"] = spec.message_ttl_ms
    queue = await channel.declare_queue(
        spec.name,
        durable=spec.durable,
        auto_delete=spec.auto_delete,
        arguments=arguments or None,
    )
    for key in spec.routing_keys:
        await queue.bind(spec.exchange, routing_key=key)
    if spec.retry_exchange:
        await queue.bind(spec.retry_exchange, routing_key=spec.name)
    return queue


async def declare_core(channel: AbstractChannel, topology: Topology) -> None:
    """The exchanges, the dead-letter queue and the dependency queue."""
    await declare_exchange(channel, topology.events)
    await declare_exchange(channel, topology.dead_letter)
    await declare_exchange(channel, topology.retry)
    for seconds in DELAY_LEVELS:
        await declare_exchange(channel, topology.delay_exchange(seconds))
        await declare_queue(channel, topology.delay_queue(seconds))
    await declare_queue(channel, topology.dead_queue)
    await declare_queue(channel, topology.deps)


async def declare_site(channel: AbstractChannel, topology: Topology, site_id: int) -> None:
    """A site's work queues (exchanges must exist: see :func:`declare_core`)."""
    for spec in topology.site(site_id).all():
        await declare_queue(channel, spec)


async def delete_namespace(
    channel: AbstractChannel, topology: Topology, site_ids: list[int]
) -> None:
    """Remove every queue and exchange of the namespace (tests, `site rm`)."""
    for spec in [q for s in site_ids for q in topology.site(s).all()]:
        await channel.queue_delete(spec.name)
    await channel.queue_delete(topology.deps.name)
    await channel.queue_delete(topology.dead_queue.name)
    for seconds in DELAY_LEVELS:
        await channel.queue_delete(topology.delay_queue(seconds).name)
        await channel.exchange_delete(topology.delay_exchange(seconds).name)
    await channel.exchange_delete(topology.events.name)
    await channel.exchange_delete(topology.dead_letter.name)
    await channel.exchange_delete(topology.retry.name)


async def delete_site(channel: AbstractChannel, topology: Topology, site_id: int) -> None:
    """Remove a site's work queues (when the site itself is removed)."""
    for spec in topology.site(site_id).all():
        await channel.queue_delete(spec.name)
