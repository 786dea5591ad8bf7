"""Limits of what one request may ask: body size, page size, jobs per creation."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from balsam_mq.domain.wire import MAX_CREATE as MAX_CREATE, MAX_PAGE as MAX_PAGE

MAX_BODY_BYTES = 32 * 1024 * 1024  # a bulk creation of MAX_CREATE jobs with their parameters
DEFAULT_PAGE = 100  # a listing's page when its URL names no limit


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request whose body is over ``limit`` bytes with 413, before reading it
    when it says its length, else as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    detail = "the Content-Length header is not a number"
                    await _refuse(send, "BadRequest", detail, 400)
                    return
                if length > self.limit:
                    await _refuse(send, "RequestTooLarge", self._message(length), 413)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyTooLarge:
            if not started:
                await _refuse(send, "RequestTooLarge", self._message(seen), 413)

    def _message(self, size: int) -> str:
        return (
            f"the request body ({size:,} bytes or more) is over the limit of {self.limit:,} bytes"
        )


async def _refuse(send: Send, error: str, detail: str, status: int) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers: list[Any] = [(b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
