"""Opening MongoDB: the client, the schema check, and the repositories handed to callers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from pymongo.monitoring import CommandListener

from balsam_mq.errors import StoreError, Unavailable, brief
from balsam_mq.store.apps import AppRepository
from balsam_mq.store.batch_jobs import BatchJobRepository
from balsam_mq.store.counters import Counters
from balsam_mq.store.events import EventRepository
from balsam_mq.store.jobs import JobRepository
from balsam_mq.store.queries import QueryRepository
from balsam_mq.store.relay_state import RelayStateRepository
from balsam_mq.store.schema import ensure_schema
from balsam_mq.store.sessions import SessionRepository
from balsam_mq.store.sites import SiteRepository
from balsam_mq.store.transactions import Transactor
from balsam_mq.store.transfer_items import TransferItemRepository
from balsam_mq.store.users import UserRepository

# server answers that mean "not now": shutting down, stepped down, no primary yet
_NOT_NOW_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says MongoDB is away for now (down, unreachable, electing a
    primary), so the same work will succeed once it is back."""
    if isinstance(exc, (Unavailable, ConnectionFailure)):
        return True
    if isinstance(exc, OperationFailure) and exc.code in _NOT_NOW_CODES:
        return True
    return isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError")


T = TypeVar("T")


async def uncancelled(call: Callable[[], Awaitable[T]], within: float) -> T:
    """Await ``call()`` to its end, bounded by PyMongo's own timeout (``within`` seconds)
    instead of by cancellation: a task cancelled while PyMongo waits for a server (an
    outage) breaks the driver's topology lock ("RuntimeError: Lock is not acquired"
    instead of the cancellation). A cancellation arriving meanwhile takes effect after
    it; past ``within`` the call raises PyMongo's timeout error."""
    with pymongo.timeout(within):
        with anyio.CancelScope(shield=True):
            result = await call()
        return result


@dataclass(frozen=True)
class Store:
    """An open database and its repositories."""

    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    tx: Transactor
    counters: Counters
    sites: SiteRepository
    jobs: JobRepository
    events: EventRepository
    relay_state: RelayStateRepository
    apps: AppRepository
    batch_jobs: BatchJobRepository
    queries: QueryRepository
    sessions: SessionRepository
    users: UserRepository
    transfer_items: TransferItemRepository


@asynccontextmanager
async def open_store(
    url: str,
    db_name: str,
    *,
    init_schema: bool = True,
    timeout_ms: int = 10_000,
    listeners: Sequence[CommandListener] = (),
) -> AsyncIterator[Store]:
    """Connect to MongoDB, make sure the schema exists, and yield the repositories.
    ``listeners`` see every command sent (PyMongo's command monitoring).

    Example::

        async with open_store(settings.mongodb_url, settings.db) as store:
            job = await store.jobs.get(42)
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, event_listeners=listeners
    )
    try:
        try:
            hello = await client.admin.command("hello")
        except PyMongoError as exc:
            raise StoreError(
                f"cannot reach MongoDB at {url}: {brief(exc)}; start the local stack with "
                "`balsam-mq up` or point BALSAM_MONGODB_URL at a running replica set"
            ) from exc
        if not hello.get("setName"):
            raise StoreError(
                f"MongoDB at {url} is not a replica set member: balsam_mq needs transactions "
                "and change streams (start mongod with --replSet, or use `balsam-mq up`)"
            )
        db = client[db_name]
        if init_schema:
            await ensure_schema(db)
        tx = Transactor(client)
        yield Store(
            client=client,
            db=db,
            tx=tx,
            counters=Counters(db),
            sites=SiteRepository(db, tx),
            jobs=JobRepository(db, tx),
            events=EventRepository(db),
            relay_state=RelayStateRepository(db),
            apps=AppRepository(db, tx),
            batch_jobs=BatchJobRepository(db, tx),
            queries=QueryRepository(db),
            sessions=SessionRepository(db),
            users=UserRepository(db),
            transfer_items=TransferItemRepository(db),
        )
    finally:
        await client.close()
