"""Where each relay keeps the change-stream resume token of its last confirmed publish."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import utcnow
from balsam_mq.errors import StoreError
from balsam_mq.store.schema import ORIGIN, RELAY_STATE


class RelayStateRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._coll = db[RELAY_STATE]

    async def token(self, relay: str) -> Any:
        """The relay's saved token, else the database's origin point."""
        doc = await self._coll.find_one({"_id": relay})
        if doc is None:
            doc = await self._coll.find_one({"_id": ORIGIN})
        if doc is None:
            raise StoreError(
                f"no resume point for relay {relay!r}: the database schema was never initialised"
            )
        return doc["token"]

    async def save(self, relay: str, token: Any) -> None:
        await self._coll.update_one(
            {"_id": relay}, {"$set": {"token": token, "updated": utcnow()}}, upsert=True
        )
