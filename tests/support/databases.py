"""Test databases of the session's mongod, emptied after a test for the next one to use.

A new database costs a few tenths of a second (its collections and their indexes are
files for mongod to create, and dropping it costs another tenth); emptying one costs a
hundredth. A database goes back to the pool only if it still has exactly the schema's
collections and indexes, and no profiling left on; any other is dropped, as is every
database of a mongod a test started for itself.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.store import ensure_schema, open_store

Shape = dict[str, list[str]]


async def shape_of(db: AsyncDatabase[dict[str, Any]]) -> Shape:
    """Each collection with the names of its indexes."""
    names = sorted(await db.list_collection_names())
    return {name: sorted(await db[name].index_information()) for name in names}


class DatabasePool:
    def __init__(self, url: str) -> None:
        self.url = url  # the session's mongod: only its databases are pooled
        self._clean: deque[str] = deque()
        self._schema: Shape | None = None

    def take(self, url: str) -> str:
        """A clean database's name (or a new one's)."""
        if url == self.url and self._clean:
            return self._clean.popleft()
        return f"test_{uuid.uuid4().hex[:12]}"

    async def give_back(self, url: str, db: AsyncDatabase[dict[str, Any]]) -> None:
        if url != self.url:
            await db.client.drop_database(db.name)
            return
        if self._schema is None:
            self._schema = await self._fresh_shape()
        profiling = (await db.command("profile", -1)).get("was", 0)
        if profiling or await shape_of(db) != self._schema:
            await db.client.drop_database(db.name)
            return
        for name in self._schema:
            await db[name].delete_many({})
        self._clean.append(db.name)

    async def _fresh_shape(self) -> Shape:
        name = f"schema_{uuid.uuid4().hex[:12]}"
        async with open_store(self.url, name, init_schema=False) as store:
            await ensure_schema(store.db)
            try:
                return await shape_of(store.db)
            finally:
                await store.client.drop_database(name)

    async def drop_all(self) -> None:
        if not self._clean:
            return
        async with open_store(self.url, "admin", init_schema=False) as store:
            while self._clean:
                await store.client.drop_database(self._clean.popleft())
