"""What the HTTP backend reads from a gateway: its error answers, as the SDK's exceptions,
and its event stream (``GET /events/stream``, server-sent events) as watches that reconnect
by themselves, resuming after the last event received."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from balsam_mq import errors
from balsam_mq.domain import Event
from balsam_mq.errors import AuthError, BalsamError, GatewayError, Unavailable

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0
Param = tuple[str, str | int | float | bool | None]  # a query parameter of a URL


def http_error(status: int, body: Any, url: str) -> BalsamError:
    """The exception a gateway's error answer stands for."""
    name = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        detail = f"the gateway answered {status} to {url}"
    kind = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, BalsamError):
        exc = kind.__new__(kind)
        Exception.__init__(exc, detail)
        return exc
    if status == 401:
        return AuthError(detail)
    if status == 404:
        return errors.NotFound(detail)
    if status in (413, 422, 400):
        return errors.QueryError(detail)
    if status >= 500:
        return Unavailable(f"the gateway failed: {detail}")
    return GatewayError(detail)


async def sse_messages(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str | None, str]]:
    """``(event, id, data)`` of each message of a Server-Sent Events stream's lines."""
    kind, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            yield kind, event_id, "\n".join(data)
            kind, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


class EventStream:
    """An :class:`~balsam_mq.sdk.backend.EventWatch` on ``GET /events/stream``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        params: list[Param],
        *,
        closed: Callable[[EventStream], None] = lambda _: None,
    ) -> None:
        self._http = http
        self._url = str(http.base_url).rstrip("/")
        self._params = params
        self._closed = closed
        self._events: list[Event] = []
        self._gap = False
        self._failure: BalsamError | None = None
        self._wake = asyncio.Event()
        self._opened = asyncio.Event()
        self._last_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read_forever(), name="balsam_mq event stream")
        opened = asyncio.ensure_future(self._opened.wait())
        done, _ = await asyncio.wait({opened, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if opened not in done:
            opened.cancel()
        if self._failure is not None:
            await self.aclose()
            raise self._failure

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._read_once()
                delay = 0.1
            except BalsamError as exc:
                self._fail(exc)
                return
            except (httpx.TransportError, httpx.StreamError) as exc:
                if not self._opened.is_set():
                    self._fail(
                        Unavailable(f"the gateway at {self._url} cannot be reached: {exc!r}")
                    )
                    return
                log.debug("event stream dropped (%r); reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _fail(self, exc: BalsamError) -> None:
        self._failure = exc
        self._wake.set()

    async def _read_once(self) -> None:
        headers = {} if self._last_id is None else {"Last-Event-ID": self._last_id}
        timeout = httpx.Timeout(None, connect=10.0)
        async with self._http.stream(
            "GET", "/events/stream", params=self._params, headers=headers, timeout=timeout
        ) as response:
            if response.is_error:
                await response.aread()
                try:
                    data = response.json()
                except ValueError:
                    data = None
                raise http_error(response.status_code, data, "GET /events/stream")
            async for kind, event_id, data in sse_messages(response.aiter_lines()):
                self._dispatch(kind, data, event_id)
        # the gateway ended the stream: reconnect and resume

    def _dispatch(self, kind: str, data: str, event_id: str | None) -> None:
        if event_id is not None:
            self._last_id = event_id
        if kind == "open":
            self._opened.set()
        elif kind == "event":
            self._events.append(Event.model_validate_json(data))
            self._wake.set()
        elif kind == "gap":
            self._gap = True
            self._wake.set()
        elif kind == "error":
            raise http_error(401, json.loads(data), "GET /events/stream")

    async def next(self) -> list[Event] | None:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._gap:
                self._gap = False
                self._events.clear()
                return None
            if self._events:
                events, self._events = self._events, []
                return events
            self._wake.clear()
            await self._wake.wait()

    def close(self) -> None:
        """Stop reading now (the reader ends in the background)."""
        self._closed(self)
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class FinishedStream:
    """A :class:`~balsam_mq.sdk.backend.FinishedWatch` on an event stream."""

    def __init__(self, stream: EventStream, job_ids: set[int]) -> None:
        self._stream = stream
        self.job_ids = job_ids

    async def next(self) -> set[int] | None:
        while True:
            events = await self._stream.next()
            if events is None:
                return None
            ready = {e.job_id for e in events if e.job_id in self.job_ids}
            if ready:
                return ready

    def close(self) -> None:
        self._stream.close()
