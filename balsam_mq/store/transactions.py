"""Running a unit of work in one MongoDB transaction, retried on transient conflicts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

T = TypeVar("T")


class Transactor:
    """Runs a body in a transaction, or inside the caller's if one is given.

    ``with_transaction`` re-runs the body on ``TransientTransactionError`` (write
    conflicts between concurrent transitions), so bodies must be re-runnable: they
    read what they decide on inside the transaction.
    """

    def __init__(self, client: AsyncMongoClient[dict[str, Any]]) -> None:
        self._client = client

    async def run(
        self,
        body: Callable[[AsyncClientSession], Awaitable[T]],
        *,
        session: AsyncClientSession | None = None,
    ) -> T:
        if session is not None:
            if not session.in_transaction:
                raise RuntimeError("the session passed in is not in a transaction")
            return await body(session)
        async with self._client.start_session() as s:
            return await s.with_transaction(
                body,
                read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
            )
