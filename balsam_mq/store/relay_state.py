"""Where each relay keeps its resume token, and the lease that lets one relay of a name publish.

Leases are timed by the database server's clock (``$$NOW``), so relays on hosts whose
clocks disagree still agree on who holds one.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from balsam_mq.domain import utcnow
from balsam_mq.errors import StoreError
from balsam_mq.store.schema import ORIGIN, RELAY_STATE


class RelayStateRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._coll = db[RELAY_STATE]

    async def token(self, relay: str) -> Any:
        """The relay's saved token, else the database's origin point."""
        doc = await self._coll.find_one({"_id": relay})
        if doc is None or "token" not in doc:
            doc = await self._coll.find_one({"_id": ORIGIN})
        if doc is None:
            raise StoreError(
                f"no resume point for relay {relay!r}: the database schema was never initialised"
            )
        return doc["token"]

    async def save(self, relay: str, token: Any, *, owner: str | None = None) -> bool:
        """Keep ``token`` as the relay's resume point; with ``owner``, only while it holds
        the lease (False: it lost it)."""
        match: dict[str, Any] = {"_id": relay}
        if owner is not None:
            match["owner"] = owner
        result = await self._coll.update_one(
            match, {"$set": {"token": token, "updated": utcnow()}}, upsert=owner is None
        )
        return owner is None or result.matched_count == 1

    async def acquire(self, relay: str, owner: str, lease_s: float) -> bool:
        """Take or renew the relay's lease for ``lease_s`` seconds; True if ``owner`` holds
        it now. A lease is free when it has no owner, or has run out."""
        free_or_mine = {
            "$or": [
                {"owner": owner},
                {"owner": {"$exists": False}},
                {"$expr": {"$lt": ["$lease_until", "$$NOW"]}},
            ]
        }
        lease = [
            {
                "$set": {
                    "owner": owner,
                    "lease_until": {"$add": ["$$NOW", int(lease_s * 1000)]},
                }
            }
        ]
        doc = await self._coll.find_one_and_update(
            {"_id": relay, **free_or_mine}, lease, return_document=ReturnDocument.AFTER
        )
        if doc is None:  # held by another relay, or no relay of this name ran yet
            try:
                await self._coll.update_one(
                    {"_id": relay, "owner": {"$exists": False}}, lease, upsert=True
                )
            except DuplicateKeyError:  # held by another relay
                return False
            return True
        return bool(doc.get("owner") == owner)

    async def release(self, relay: str, owner: str) -> None:
        """Give the lease up at once (a stopping relay), so a standby need not wait it out."""
        await self._coll.update_one(
            {"_id": relay, "owner": owner}, [{"$set": {"lease_until": "$$NOW"}}]
        )

    async def owner(self, relay: str) -> str | None:
        doc = await self._coll.find_one({"_id": relay}, {"owner": 1})
        return None if doc is None else doc.get("owner")
