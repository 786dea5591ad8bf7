"""Where a consumer sends a message it does not simply ack: back to its queue later
(deferred by its handler, or retried after a failure) through the delay queues, split
into its items, or parked in the dead-letter exchange (see ``consumer`` for when).

Every message sent here is published with a confirm before the original is acked.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from balsam_mq.broker.publisher import Outgoing, Publisher
from balsam_mq.broker.topology import DELAY_LEVELS, Topology
from balsam_mq.domain import Delivery

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-balsam-attempts"
DEFERRALS_HEADER = "x-balsam-deferrals"
# the routing key a message was first published with (retries go by the queue's name)
ROUTING_KEY_HEADER = "x-routing-key"
# what the runner writes on a message it parks
ERROR_HEADER = "x-error"
QUEUE_HEADER = "x-queue"
PARKED_AT_HEADER = "x-parked-at"

# id of a message, or of an item of a batch message -> seconds before it should come back
Deferrals = Mapping[str, float]
# marks what a parked message was about: (delivery, queue name, error)
OnParked = Callable[[Delivery, str, str], Awaitable[None]]


class Returns:
    """The ways back (and out) of the queue ``queue``'s messages, through ``retry`` (the
    default exchange), the ``delay`` exchanges by level and ``dead`` (the dead-letter
    exchange). ``on_parked`` (a handler's ``parked``, if it has one) marks what a parked
    message was about."""

    def __init__(
        self,
        queue: str,
        topology: Topology,
        *,
        retry: Publisher,
        delay: Mapping[int, Publisher],
        dead: Publisher,
        max_attempts: int,
        on_parked: OnParked | None = None,
    ) -> None:
        self.queue = queue
        self._topology = topology
        self._retry = retry
        self._delay = delay
        self._dead = dead
        self._max_attempts = max_attempts
        self._on_parked = on_parked
        self.deferred: set[str] = set()  # sent back for later, not yet back
        self.parked = 0  # messages sent to the dead-letter exchange

    async def defer(
        self,
        batch: list[AbstractIncomingMessage],
        deliveries: list[Delivery],
        deferrals: Deferrals,
    ) -> set[int]:
        """Send deferred messages and items on their way; the positions in ``batch`` of
        the messages requeued in place (not to be acked)."""
        requeued: set[int] = set()
        for position, (message, delivery) in enumerate(zip(batch, deliveries, strict=True)):
            if delivery.message_id in deferrals:
                delay = deferrals[delivery.message_id]
                if delay <= 0:
                    await message.nack(requeue=True)  # back in its place, for any consumer
                    requeued.add(position)
                    continue
                await self.later(message, delivery, message.body, delivery.message_id, delay)
                continue
            items = items_of(message.body) if any(deferrals) else None
            by_delay: dict[float, list[dict[str, Any]]] = {}
            for item in items or ():
                if item.get("id") in deferrals:
                    by_delay.setdefault(deferrals[item["id"]], []).append(item)
            for delay, chosen in by_delay.items():
                body = message.body if len(chosen) == len(items or ()) else encode_items(chosen)
                await self.later(message, delivery, body, str(chosen[0]["id"]), delay)
        return requeued

    async def later(
        self,
        message: AbstractIncomingMessage,
        delivery: Delivery,
        body: bytes,
        message_id: str,
        delay: float,
    ) -> None:
        """``body`` back to this queue after ``delay`` seconds (0: at once, at its end)."""
        headers = {
            **(message.headers or {}),
            DEFERRALS_HEADER: delivery.deferrals + 1,
            ROUTING_KEY_HEADER: delivery.routing_key,
        }
        # routed by the queue's own name: through the retry exchange at once, or by the
        # delay queue dead-lettering it there
        out = Outgoing(self.queue, body, message_id, headers)
        if delay <= 0:
            await self._retry.publish(out)
        else:
            await self._delay[self._topology.delay_level(delay)].publish(out)
        self.deferred.add(message_id)

    async def split(
        self,
        message: AbstractIncomingMessage,
        delivery: Delivery,
        items: list[dict[str, Any]],
        exc: Exception,
    ) -> None:
        log.warning(
            "%s: message %s of %d items failed (%s); handling each item alone",
            self.queue,
            delivery.message_id,
            len(items),
            exc,
        )
        headers = {**(message.headers or {}), ROUTING_KEY_HEADER: delivery.routing_key}
        await self._retry.publish_many(
            [Outgoing(self.queue, encode_items([i]), str(i["id"]), headers) for i in items]
        )
        await message.ack()

    async def failed(
        self, message: AbstractIncomingMessage, delivery: Delivery, exc: Exception
    ) -> None:
        attempts = delivery.attempts + 1
        headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts}
        out_key = delivery.routing_key
        if attempts >= self._max_attempts:
            error = "".join(traceback.format_exception(exc))[-4000:]
            log.error(
                "%s: message %s failed %d times, parked in %s: %s",
                self.queue,
                delivery.message_id,
                attempts,
                self._topology.dead_queue.name,
                exc,
            )
            headers.update(
                {
                    ERROR_HEADER: error,
                    QUEUE_HEADER: self.queue,
                    ROUTING_KEY_HEADER: out_key,
                    PARKED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            await self._dead.publish(Outgoing(out_key, message.body, delivery.message_id, headers))
            self.parked += 1
            await self._mark(delivery, f"{type(exc).__name__}: {exc}")
        else:
            log.warning(
                "%s: message %s failed (attempt %d of %d): %s",
                self.queue,
                delivery.message_id,
                attempts,
                self._max_attempts,
                exc,
            )
            headers[ROUTING_KEY_HEADER] = out_key
            retry = Outgoing(self.queue, message.body, delivery.message_id, headers)
            if attempts == 1:
                await self._retry.publish(retry)
            else:  # routed back by the queue's name when the delay queue dead-letters it
                await self._delay[retry_delay(attempts)].publish(retry)
                self.deferred.add(delivery.message_id)
        await message.ack()

    async def _mark(self, delivery: Delivery, error: str) -> None:
        """Let the handler mark what the parked message was about (best effort: the
        message is parked either way, and ``balsam-mq dead`` shows it)."""
        if self._on_parked is None:
            return
        try:
            await self._on_parked(delivery, self.queue, error)
        except Exception:
            log.exception(
                "%s: marking the jobs of parked message %s failed",
                self.queue,
                delivery.message_id,
            )


def retry_delay(attempts: int) -> int:
    """Seconds before the retry that follows failed attempt number ``attempts`` (≥ 2)."""
    return DELAY_LEVELS[min(attempts - 2, len(DELAY_LEVELS) - 1)]


def items_of(body: bytes) -> list[dict[str, Any]] | None:
    """The items of a batch body (a JSON array of objects with an ``id``), else None."""
    if body[:1] != b"[":
        return None
    try:
        items = json.loads(body)
    except ValueError:
        return None
    if not all(isinstance(i, dict) and "id" in i for i in items):
        return None
    return list(items)


def encode_items(items: list[dict[str, Any]]) -> bytes:
    return json.dumps(items, separators=(",", ":")).encode()
