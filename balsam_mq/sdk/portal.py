"""The background event loop the blocking SDK runs on: started on first use, stopped at
interpreter exit; :func:`call` runs a coroutine function there with the calling thread's
client, :func:`connect` makes a client current in this thread for a block."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from balsam_mq.sdk.client import (
    Client,
    close_default_client,
    current_client,
    make_current,
    open_client,
    reset_current,
    use_client,
)
from balsam_mq.settings import Settings, load_settings

T = TypeVar("T")

_lock = threading.Lock()
_portal: tuple[BlockingPortal, AbstractContextManager[BlockingPortal]] | None = None


def portal() -> BlockingPortal:
    """The background event loop's portal, started on first use."""
    global _portal
    with _lock:
        if _portal is None:
            manager = start_blocking_portal("asyncio")
            _portal = (manager.__enter__(), manager)
            atexit.register(_stop)
        return _portal[0]


def _stop() -> None:
    global _portal
    with _lock:
        if _portal is None:
            return
        running, manager = _portal
        _portal = None
    try:
        running.call(close_default_client)
    finally:
        manager.__exit__(None, None, None)


def call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await fn(*args, **kwargs)`` on the background loop with this thread's client."""
    client = current_client()

    async def run() -> T:
        async with use_client(client):
            return await fn(*args, **kwargs)

    return portal().call(run)


@contextmanager
def connect(settings: Settings | None = None, **overrides: Any) -> Iterator[Client]:
    """Open a client and make it current in this thread inside the block."""
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        settings = load_settings(**{**settings.model_dump(), **overrides})
    with portal().wrap_async_context_manager(open_client(settings)) as client:
        token = make_current(client)
        try:
            yield client
        finally:
            reset_current(token)
