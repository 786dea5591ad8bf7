"""The in-memory backend's live feeds: the jobs of a watch that finished, and events by
routing-key pattern (AMQP topic rules), each told of every event as it is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from balsam_mq.domain import Event, JobState
from balsam_mq.domain.states import TERMINAL_STATES


def topic_matches(pattern: str, key: str) -> bool:
    """Whether routing ``key`` is carried by a binding to ``pattern``."""
    return _match_words(pattern.split("."), key.split("."))


def _match_words(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _match_words(rest, key[1:])


class FinishedFeed:
    """A :class:`~balsam_mq.sdk.backend.FinishedWatch` over the backend's own events."""

    def __init__(self, job_ids: set[int]) -> None:
        self.job_ids = job_ids
        self._ready: set[int] = set()
        self._wake = asyncio.Event()
        self.closed = False

    def tell(self, event: Event) -> None:
        if event.job_id in self.job_ids and JobState(event.to_state) in TERMINAL_STATES:
            self._ready.add(event.job_id)
            self._wake.set()

    async def next(self) -> set[int] | None:
        await self._wake.wait()
        self._wake.clear()
        ready, self._ready = self._ready, set()
        return ready

    def close(self) -> None:
        self.closed = True


class EventFeed:
    """An :class:`~balsam_mq.sdk.backend.EventWatch` over the backend's own events."""

    def __init__(self, routing_keys: Sequence[str]) -> None:
        self.routing_keys = list(routing_keys)
        self._queue: list[Event] = []
        self._wake = asyncio.Event()
        self.closed = False

    def tell(self, event: Event) -> None:
        if any(topic_matches(k, event.routing_key) for k in self.routing_keys):
            self._queue.append(event)
            self._wake.set()

    async def next(self) -> list[Event] | None:
        await self._wake.wait()
        self._wake.clear()
        events, self._queue = self._queue, []
        return events

    async def aclose(self) -> None:
        self.closed = True
