"""Live event streams of the gateway (Server-Sent Events), bridged from RabbitMQ.

A stream is a private queue bound to the routing keys the client asked for (or those
its filters allow), read by a pump into a numbered buffer; only the caller's events
that meet the filters enter it. Each event goes out as ``id: <stream>:<n>``. A client
whose connection drops reconnects with ``Last-Event-ID``: the stream outlives its
connection for :data:`LINGER_S` seconds, so it resumes after event ``n`` with nothing
missed or repeated. If the stream is gone (the gateway restarted, or the client came back
too late) or RabbitMQ's connection dropped, the client is sent ``event: gap``: events may
have been missed, and it should read the event log for the time it was away (the SDK
does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from balsam_mq.domain import Event, utcnow
from balsam_mq.domain.queries import Condition, matches
from balsam_mq.errors import AuthError
from balsam_mq.gateway.auth import Caller, check_expiry
from balsam_mq.gateway.scope import Scope
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.sdk.stream import EventStream

log = logging.getLogger(__name__)

LINGER_S = 60.0  # a stream kept after its client left, for the client to resume
BUFFER = 10_000  # events a stream keeps for a client resuming
KEEPALIVE_S = 15.0  # a comment line when nothing else was sent (proxies close idle streams)
_SITES_REFRESH_S = 2.0


@dataclass(frozen=True)
class Item:
    n: int
    event: Event | None  # None: a gap


class Stream:
    def __init__(
        self,
        user: str,
        scope: Scope,
        watch: EventStream,
        conditions: Sequence[Condition],
        tags: dict[str, str | None] | None,
    ) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.user = user
        self._scope = scope
        self._watch = watch
        self._conditions = tuple(conditions)
        self._tags = tags
        self._job_tags: dict[int, dict[str, str]] = {}
        self._sites: set[int] = set()
        self._sites_read = 0.0
        self.items: deque[Item] = deque(maxlen=BUFFER)
        self._n = 0
        self.arrived = asyncio.Event()
        self.clients = 0
        self.left_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        while True:
            events = await self._watch.next()
            if events is None:
                self._append(None)
                continue
            for event in events:
                if await self._wanted(event):
                    self._append(event)

    def _append(self, event: Event | None) -> None:
        self._n += 1
        self.items.append(Item(self._n, event))
        self.arrived.set()

    async def _wanted(self, event: Event) -> bool:
        if event.site_id not in self._sites and time.monotonic() - self._sites_read > (
            _SITES_REFRESH_S
        ):
            self._scope._site_ids = None  # sites created since are the caller's too
            self._sites = set(await self._scope.site_ids())
            self._sites_read = time.monotonic()
        if event.site_id not in self._sites:
            return False
        if not matches(self._conditions, event.model_dump()):
            return False
        if self._tags is not None:
            if event.job_id is None:
                return False
            tags = await self._tags_of(event.job_id)
            return all(k in tags and (v is None or tags[k] == v) for k, v in self._tags.items())
        return True

    async def _tags_of(self, job_id: int) -> dict[str, str]:
        if job_id not in self._job_tags:
            if len(self._job_tags) > BUFFER:
                self._job_tags.clear()
            doc = await self._scope._store.db["jobs"].find_one({"_id": job_id}, {"tags": 1})
            self._job_tags[job_id] = dict((doc or {}).get("tags") or {})
        return self._job_tags[job_id]

    def after(self, n: int) -> tuple[bool, list[Item]]:
        """``(complete, items after n)``: complete is false when some were dropped."""
        if not self.items:
            return True, []
        first = self.items[0].n
        complete = n + 1 >= first
        return complete, [i for i in self.items if i.n > n]

    @property
    def last(self) -> int:
        return self._n

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self._watch.aclose()


class StreamHub:
    """Every open stream of the gateway, and their removal once left for too long."""

    def __init__(self, backend: DirectBackend) -> None:
        self._backend = backend
        self._streams: dict[str, Stream] = {}

    async def open(
        self,
        scope: Scope,
        keys: Sequence[str],
        conditions: Sequence[Condition],
        tags: dict[str, str | None] | None,
    ) -> Stream:
        watch = await self._backend.subscribe_events(keys)
        stream = Stream(scope.user, scope, watch, conditions, tags)
        stream._sites = set(await scope.site_ids())
        stream._sites_read = time.monotonic()
        stream.task = asyncio.create_task(stream.pump(), name=f"stream {stream.id}")
        self._streams[stream.id] = stream
        return stream

    def find(self, stream_id: str, user: str) -> Stream | None:
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.user == user else None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LINGER_S / 4)
            now = time.monotonic()
            for sid, stream in list(self._streams.items()):
                if stream.clients == 0 and now - stream.left_at > LINGER_S:
                    del self._streams[sid]
                    await stream.aclose()

    async def aclose(self) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            await stream.aclose()

    async def send(
        self, stream: Stream, after: int, caller: Caller, gap_first: bool
    ) -> AsyncIterator[str]:
        """The stream's items after ``after`` as SSE text, then each as it comes."""
        stream.clients += 1
        try:
            yield f"retry: 1000\nevent: open\nid: {stream.id}:{after}\ndata: {stream.id}\n\n"
            if gap_first:
                yield _gap(stream.id, after)
            while True:
                try:
                    check_expiry(caller)
                except AuthError as exc:
                    yield _error(exc)
                    return
                complete, items = stream.after(after)
                if not complete:
                    yield _gap(stream.id, after)
                for item in items:
                    after = item.n
                    if item.event is None:
                        yield _gap(stream.id, after)
                    else:
                        data = item.event.model_dump_json()
                        yield f"id: {stream.id}:{after}\nevent: event\ndata: {data}\n\n"
                if stream.last > after:
                    continue
                stream.arrived.clear()
                wait = KEEPALIVE_S
                if caller.expires_at is not None:  # wake up to say the token expired
                    left = (caller.expires_at - utcnow()).total_seconds()
                    wait = max(0.0, min(wait, left + 0.01))
                try:
                    await asyncio.wait_for(stream.arrived.wait(), wait)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            stream.clients -= 1
            stream.left_at = time.monotonic()


def _gap(stream_id: str, n: int) -> str:
    return f"id: {stream_id}:{n}\nevent: gap\ndata: {{}}\n\n"


def _error(exc: AuthError) -> str:
    return f"event: error\ndata: {json.dumps({'error': 'AuthError', 'detail': str(exc)})}\n\n"


def parse_last_event_id(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    sid, _, n = text.partition(":")
    if not sid or not n.isdigit():
        return None
    return sid, int(n)
