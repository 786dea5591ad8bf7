"""The SDK client: an open backend plus what it learned (synced apps), and which one is current.

``async with balsam_mq.connect() as client`` makes ``client`` current for the
class-level API (``Sleeper.submit``, ``Job.objects``) inside the block. Outside any
``connect``, that API uses a default client, created from :func:`load_settings` on
first use (one per event loop; nothing is opened at import time).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from typing import Any, NoReturn, cast

from balsam_mq.errors import ConfigError
from balsam_mq.sdk.backend import Backend
from balsam_mq.settings import Settings, load_settings


class Client:
    """A connection to balsam_mq through one backend.

    Example::

        async with balsam_mq.connect(db="balsam") as client:
            await Sleeper.submit("test/1", sleeptime=1)
    """

    def __init__(self, backend: Backend, settings: Settings | None = None) -> None:
        self.backend = backend
        self.settings = settings  # what it was opened from, if it was

    def __repr__(self) -> str:
        if self.settings is None:
            return f"<Client {type(self.backend).__name__}>"
        if self.settings.gateway_url is not None:
            return f"<Client gateway={self.settings.gateway_url!r}>"
        return f"<Client db={self.settings.db!r} namespace={self.settings.namespace!r}>"

    async def aclose(self) -> None:
        """Close the backend and let go of it (a closed client keeps no connections alive)."""
        backend, self.backend = self.backend, cast(Backend, _Closed())
        await backend.aclose()


class _Closed:
    """The backend of a closed client: any use is a clear error."""

    def __getattr__(self, name: str) -> Any:
        self.closed()

    def closed(self) -> NoReturn:
        raise ConfigError("this balsam_mq client is closed (its connect() block has ended)")

    async def aclose(self) -> None:
        return None


_current: ContextVar[Client | None] = ContextVar("balsam_mq_client", default=None)


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[Client]:
    """A client on MongoDB and RabbitMQ as ``settings`` say (or on the HTTP gateway of
    ``settings.gateway_url``), without making it current.

    The database and broker libraries are imported here, not with the SDK: code that
    only defines or runs apps never loads them."""
    if settings.gateway_url is not None:
        async with _gateway_client(settings) as client:
            yield client
        return
    from balsam_mq.broker import build_topology, open_amqp
    from balsam_mq.sdk.direct import DirectBackend
    from balsam_mq.store import open_store

    async with (
        open_store(settings.mongodb_url, settings.db) as store,
        open_amqp(settings.amqp_url) as amqp,
    ):
        client = Client(
            DirectBackend(
                store,
                amqp,
                build_topology(settings.namespace, quorum=settings.quorum),
            ),
            settings,
        )
        try:
            yield client
        finally:
            await client.aclose()


@asynccontextmanager
async def _gateway_client(settings: Settings) -> AsyncIterator[Client]:
    from balsam_mq.sdk.credentials import token_for
    from balsam_mq.sdk.http import HttpBackend

    assert settings.gateway_url is not None
    token = settings.token or token_for(settings.credentials, settings.gateway_url)
    client = Client(HttpBackend(settings.gateway_url, token), settings)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def connect(settings: Settings | None = None, **overrides: Any) -> AsyncIterator[Client]:
    """Open a client and make it the current one inside the block.

    ``settings`` defaults to the ``BALSAM_*`` environment; ``overrides`` replace fields.

    Example::

        async with balsam_mq.connect(db="science") as client:
            jobs = await Job.objects.filter(state="FAILED").count()
    """
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        settings = load_settings(**{**settings.model_dump(), **overrides})
    async with open_client(settings) as client:
        token = _current.set(client)
        try:
            yield client
        finally:
            _current.reset(token)


def make_current(client: Client) -> Token[Client | None]:
    """Make ``client`` current in this context until :func:`reset_current` (blocking API)."""
    return _current.set(client)


def reset_current(token: Token[Client | None]) -> None:
    _current.reset(token)


def current_client() -> Client | None:
    """The client made current by :func:`connect` (or :func:`use_client`), if any."""
    return _current.get()


@asynccontextmanager
async def use_client(client: Client | None) -> AsyncIterator[None]:
    """Make ``client`` current inside the block (``None``: leave things as they are)."""
    if client is None:
        yield
        return
    token = _current.set(client)
    try:
        yield
    finally:
        _current.reset(token)


# --- the default client, one per event loop --------------------------------------------
#
# The default client lives inside a task of its own (its keeper), which holds the client's
# context open until it is closed or cancelled. When ``asyncio.run`` ends, it cancels the
# keeper with every other task, so the connections close in order inside that task, before
# the loop finalizes asynchronous generators: a script needs no closing code of its own.

_defaults: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[Client, asyncio.Task[None]]
] = weakref.WeakKeyDictionary()
_default_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def get_client() -> Client:
    """The current client, else this event loop's default client (opened on first use)."""
    client = _current.get()
    if client is not None:
        return client
    loop = asyncio.get_running_loop()
    if loop in _defaults:
        return _defaults[loop][0]
    lock = _default_locks.setdefault(loop, asyncio.Lock())
    async with lock:
        if loop not in _defaults:
            opened: asyncio.Future[Client] = loop.create_future()
            keeper = loop.create_task(_keep(load_settings(), opened), name="balsam_mq client")
            try:
                client = await asyncio.shield(opened)
            except BaseException:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                raise
            _defaults[loop] = (client, keeper)
    return _defaults[loop][0]


async def _keep(settings: Settings, opened: asyncio.Future[Client]) -> None:
    """Open a client, hand it over through ``opened``, and hold it open until cancelled."""
    try:
        async with open_client(settings) as client:
            opened.set_result(client)
            await asyncio.Future()  # until cancelled
    except BaseException as exc:
        if not opened.done():
            opened.set_exception(exc)
            return
        if not isinstance(exc, asyncio.CancelledError):
            raise


async def close_default_client() -> None:
    """Close this event loop's default client, if one was opened."""
    entry = _defaults.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        keeper = entry[1]
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
