"""Integer ids from the ``counters`` collection, reserved one at a time or in blocks."""

from __future__ import annotations

import os
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.store.schema import COUNTERS

# a creation of at most this many jobs takes its ids from the process's block (IdBlocks)
SMALL_CREATION = 16
# the largest block a process reserves ahead for its small creations
BLOCK_MAX = 64


class Counters:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._coll = db[COUNTERS]

    async def reserve(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive ids for ``name`` in one round trip; returns the first.

        Runs outside any transaction on purpose: concurrent creators must not conflict
        on the counter row. An aborted creation only leaves a gap in the ids.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        doc = await self._coll.find_one_and_update(
            {"_id": name},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return int(doc["value"]) - count + 1


class IdBlocks:
    """The ids of ``name`` for one process's creations: a small creation (at most
    :data:`SMALL_CREATION` ids) takes its ids from a block the process reserved before,
    so that a stream of single submissions costs no reservation each.

    The first block is the creation's own size, and each next one twice the last (up to
    :data:`BLOCK_MAX`): a process that creates one job reserves one id, one that keeps
    creating reserves a round trip per 64. Ids stay unique (a forked child never takes
    its parent's block), a block left unused when the process ends is a gap, and a job's
    id is above its parents' (a block reserved before a parent was created is not used
    for its children). Jobs made by different processes therefore do not number in the
    order they were created.
    """

    def __init__(self, counters: Counters, name: str) -> None:
        self._counters = counters
        self._name = name
        self._pid = os.getpid()
        self._next = self._left = 0
        self._size = 1

    async def take(self, count: int, *, above: int = 0) -> int:
        """The first of ``count`` consecutive new ids, each greater than ``above``."""
        if count > SMALL_CREATION:
            return await self._counters.reserve(self._name, count)
        if self._pid != os.getpid():  # forked: the parent's block is the parent's
            self._pid, self._left, self._size = os.getpid(), 0, 1
        if self._left < count or self._next <= above:
            size = max(count, self._size)
            self._next = await self._counters.reserve(self._name, size)
            self._left = size
            self._size = min(2 * self._size, BLOCK_MAX)
        first = self._next
        self._next += count
        self._left -= count
        return first
