"""Following the event log live: ``async with EventLog.objects.follow(...) as feed``.

A feed subscribes first (a private queue bound to the routing keys its filters allow),
then reads the ``history`` latest matching events from the store; every event
committed afterwards arrives from the broker. An event committed before the feed
opened is never news: unless it is in the history, it is not handed out when a relay
publishes it late (or again, after a restart from its last saved point); and an event
received twice is handed out once. If the broker connection drops, the feed
re-reads the store from a little before the last event it handed out, so nothing
is skipped. Events flow while a relay runs (every site agent runs one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from itertools import product
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from balsam_mq.domain import Event, utcnow
from balsam_mq.domain.queries import Condition, QuerySpec, matches
from balsam_mq.errors import QueryError
from balsam_mq.sdk.backend import EventWatch
from balsam_mq.sdk.client import Client, get_client

if TYPE_CHECKING:
    from balsam_mq.sdk.query import Query

T = TypeVar("T")

MAX_KEYS = 64  # bindings of one feed; beyond that a dimension becomes a wildcard
REREAD_MARGIN = timedelta(seconds=5)  # clocks of the writing processes may differ this much
_REMEMBERED = 10_000  # event ids kept to drop duplicates


def routing_keys(spec: QuerySpec) -> list[str]:
    """The narrowest bindings (``<kind>.<site_id>.<state>.#``: quiet events too) that still
    carry every event the spec's conditions may match; the conditions themselves are
    checked on arrival."""
    words: dict[str, list[str] | None] = {"kind": None, "site_id": None, "to_state": None}
    for cond in spec.conditions:
        if cond.field not in words or cond.op not in ("eq", "in"):
            continue
        values = {str(v) for v in (cond.value if cond.op == "in" else [cond.value])}
        known = words[cond.field]
        words[cond.field] = sorted(values if known is None else values & set(known))
    dims = [words["kind"], words["site_id"], words["to_state"]]
    size = 1
    for i, dim in enumerate(dims):
        if dim is not None and size * len(dim) > MAX_KEYS:
            dims[i] = None
        elif dim is not None:
            size *= len(dim)
    return [".".join((*p, "#")) for p in product(*(d if d is not None else ["*"] for d in dims))]


class EventFeed(Generic[T]):
    """Matching events as they are committed, after the ``history`` latest ones.

    Example::

        async with EventLog.objects.follow(site="polaris", history=20) as feed:
            async for event in feed:
                print(event.timestamp, event.job_id, event.from_state, event.to_state)
    """

    def __init__(self, query: Query[T], history: int | None = 0) -> None:
        if history is not None and history < 0:
            raise QueryError(f"follow: history must be >= 0, got {history}")
        self._query = query
        self._history = history
        self._client: Client | None = None
        self._spec: QuerySpec | None = None
        self._watch: EventWatch | None = None
        self._pending: list[Event] = []
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._since: datetime = utcnow()
        self._opened: datetime = self._since

    async def __aenter__(self) -> EventFeed[T]:
        self._client = client = await get_client()
        self._spec = spec = await self._query.spec(client)
        self._since = self._opened = utcnow()
        self._watch = await client.backend.subscribe_events(routing_keys(spec))
        if self._history != 0:  # None: every stored one
            latest = QuerySpec("events", spec.conditions, ("-timestamp", "-id"), 0, self._history)
            self._pending = self._fresh(reversed(await client.backend.find(latest)))
        # committed lately but before now: remembered, so that a late publication is dropped
        since = Condition("timestamp", "gte", self._opened - REREAD_MARGIN)
        recent = QuerySpec("events", (*spec.conditions, since), ("timestamp", "id"))
        self._fresh(await client.backend.find(recent))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watch is not None:
            await self._watch.aclose()
            self._watch = None

    def _fresh(self, events: Iterable[Event]) -> list[Event]:
        """The events not handed out before, remembered from now on."""
        out = []
        for event in events:
            key = event.id or f"{event.kind}:{event.job_id}:{event.seq}:{event.timestamp}"
            if key in self._seen:
                continue
            self._seen.add(key)
            self._order.append(key)
            if len(self._order) > _REMEMBERED:
                self._seen.discard(self._order.popleft())
            self._since = max(self._since, event.timestamp)
            out.append(event)
        return out

    async def _reread(self) -> list[Event]:
        """Events committed while the stream was interrupted (read from the store)."""
        assert self._client is not None and self._spec is not None
        since = Condition("timestamp", "gte", self._since - REREAD_MARGIN)
        spec = QuerySpec("events", (*self._spec.conditions, since), ("timestamp", "id"))
        return self._fresh(await self._client.backend.find(spec))

    async def batches(self) -> AsyncIterator[list[T]]:
        """The history first, then each group of events that arrived together."""
        if self._watch is None or self._spec is None:
            raise QueryError("an event feed is used inside `async with ...follow(...)`")
        wrap = self._query._manager.wrap
        if self._pending:
            pending, self._pending = self._pending, []
            yield [wrap(e) for e in pending]
        while True:
            got = await self._watch.next()
            if got is None:
                events = await self._reread()
            else:
                conditions = self._spec.conditions
                old = self._opened - REREAD_MARGIN
                events = self._fresh(
                    e for e in got if e.timestamp >= old and matches(conditions, _values(e))
                )
            if events:
                yield [wrap(e) for e in events]

    async def __aiter__(self) -> AsyncIterator[T]:
        async for batch in self.batches():
            for item in batch:
                yield item


def _values(event: Event) -> dict[str, Any]:
    return event.model_dump()
