"""Hearing that jobs finished: one private auto-delete queue per client, fanned out to waiters.

The queue is bound to ``job.<site>.JOB_FINISHED.#`` and ``job.<site>.FAILED.#`` (quiet
or not) of every site a waiter asked for, and a subscription is registered *before* ``subscribe``
returns, so a caller that re-reads MongoDB afterwards cannot miss a job that finishes
in between. After a broker reconnection every subscriber is told to re-check, since
events published while disconnected never reached the queue.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from balsam_mq.broker import Topology, close_channel
from balsam_mq.broker.declare import declare_exchange, declare_queue
from balsam_mq.domain import JobState, decode_events
from balsam_mq.errors import SerializationError

log = logging.getLogger(__name__)

TERMINAL_KEYS = (JobState.JOB_FINISHED.value, JobState.FAILED.value)


class Subscription:
    """The ids of watched jobs announced as finished, gathered until read."""

    def __init__(self, hub: FinishedEvents, job_ids: set[int]) -> None:
        self._hub = hub
        self.job_ids = job_ids
        self._ready: set[int] = set()
        self._recheck = False
        self._event = asyncio.Event()

    def _push(self, job_id: int | None) -> None:
        if job_id is None:
            self._recheck = True
        else:
            self._ready.add(job_id)
        self._event.set()

    async def next(self) -> set[int] | None:
        await self._event.wait()
        self._event.clear()
        if self._recheck:
            self._recheck = False
            self._ready.clear()
            return None
        ready, self._ready = self._ready, set()
        return ready

    def close(self) -> None:
        self._hub._forget(self)


class FinishedEvents:
    """The client's listener for terminal job events (created on first use)."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        self._connection = connection
        self._topology = topology
        self._lock = asyncio.Lock()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._bound: set[int] = set()
        self._by_job: dict[int, set[Subscription]] = {}

    async def subscribe(self, job_ids: Iterable[int], site_ids: Iterable[int]) -> Subscription:
        sub = Subscription(self, set(job_ids))
        for job_id in sub.job_ids:
            self._by_job.setdefault(job_id, set()).add(sub)
        try:
            await self._bind(set(site_ids))
        except BaseException:
            self._forget(sub)
            raise
        return sub

    def _forget(self, sub: Subscription) -> None:
        for job_id in sub.job_ids:
            subs = self._by_job.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_job[job_id]

    async def _bind(self, site_ids: set[int]) -> None:
        if site_ids <= self._bound:
            return
        async with self._lock:
            queue = await self._open()
            for site_id in sorted(site_ids - self._bound):
                for state in TERMINAL_KEYS:
                    key = f"job.{site_id}.{state}.#"
                    await queue.bind(self._topology.events.name, routing_key=key)
                self._bound.add(site_id)

    async def _open(self) -> AbstractQueue:
        if self._queue is not None:
            return self._queue
        channel = await self._connection.channel()
        await declare_exchange(channel, self._topology.events)
        spec = self._topology.private(f"finished.{uuid.uuid4().hex}", ())
        queue = await declare_queue(channel, spec)
        await queue.consume(self._on_message, no_ack=True)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._channel, self._queue = channel, queue
        return queue

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            events = decode_events(message.body)
        except SerializationError:
            log.warning("ignoring a malformed event message on %s", message.routing_key)
            return
        for event in events:
            job_id = event.job_id
            for sub in self._by_job.get(job_id, ()) if job_id is not None else ():
                sub._push(job_id)

    def _on_reconnect(self, *_: Any) -> None:
        for sub in {s for subs in self._by_job.values() for s in subs}:
            sub._push(None)

    async def aclose(self) -> None:
        if self._channel is not None:
            self._connection.reconnect_callbacks.discard(self._on_reconnect)
            await close_channel(self._channel)
            self._channel = self._queue = None
            self._bound.clear()
