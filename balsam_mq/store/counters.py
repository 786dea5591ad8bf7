"""Integer ids from the ``counters`` collection, reserved one at a time or in blocks."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.store.schema import COUNTERS


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
