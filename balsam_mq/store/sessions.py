"""Launcher sessions (the ``sessions`` collection): creation, heartbeats, the end of one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import Session, utcnow
from balsam_mq.errors import NotFound
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import SESSIONS


class SessionRepository:
    """Example::

    session = await SessionRepository(store.db).create(Session(site_id=1, hostname="nid01"))
    await sessions.heartbeat(session.id)
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._sessions = db[SESSIONS]
        self._counters = Counters(db)

    async def create(self, session: Session, **extra: Any) -> Session:
        """Register a live session; ``extra`` fields (nodes, wall time...) are stored with it."""
        now = utcnow()
        new = session.model_copy(
            update={
                "id": await self._counters.reserve(SESSIONS),
                "heartbeat": now,
                "created_at": now,
            }
        )
        await self._sessions.insert_one({**new.to_doc(), "state": "RUNNING", **extra})
        return new

    async def get(self, session_id: int) -> Session:
        doc = await self._sessions.find_one({"_id": session_id})
        if doc is None:
            raise NotFound(f"Session {session_id} does not exist")
        return Session.from_doc(doc)

    async def raw(self, session_id: int) -> dict[str, Any] | None:
        """The stored document with every extra field (for status displays and tests)."""
        return await self._sessions.find_one({"_id": session_id})

    async def heartbeat(self, session_id: int, **fields: Any) -> bool:
        """Refresh the heartbeat (and ``fields``); False if the session is gone (reaped)."""
        result = await self._sessions.update_one(
            {"_id": session_id, "state": {"$ne": "LOST"}},
            {"$set": {**fields, "heartbeat": utcnow()}},
        )
        return result.matched_count == 1

    async def end(self, session_id: int, **fields: Any) -> None:
        """Mark the session stopped: it holds no jobs any more."""
        now = utcnow()
        await self._sessions.update_one(
            {"_id": session_id},
            {"$set": {**fields, "state": "STOPPED", "ended_at": now, "heartbeat": now}},
        )

    async def stale(self, site_id: int, older_than: datetime) -> list[int]:
        """Running sessions of the site whose last heartbeat is older than ``older_than``."""
        cursor = self._sessions.find(
            {"site_id": site_id, "state": "RUNNING", "heartbeat": {"$lt": older_than}}, {"_id": 1}
        )
        return [d["_id"] async for d in cursor]

    async def ended(self, session_ids: list[int], before: datetime) -> list[int]:
        """Those of ``session_ids`` that ended (stopped or lost) before ``before``, or that
        no longer exist."""
        cursor = self._sessions.find(
            {"_id": {"$in": session_ids}}, {"state": 1, "ended_at": 1, "heartbeat": 1}
        )
        found = {d["_id"]: d async for d in cursor}
        return [
            i
            for i in session_ids
            if (d := found.get(i)) is None
            or (d.get("state") != "RUNNING" and (d.get("ended_at") or d["heartbeat"]) < before)
        ]

    async def mark_lost(self, session_ids: list[int], reason: str) -> None:
        """Sessions given up for dead: kept for the record, refused further heartbeats."""
        await self._sessions.update_many(
            {"_id": {"$in": session_ids}, "state": "RUNNING"},
            {"$set": {"state": "LOST", "ended_at": utcnow(), "stop_reason": reason}},
        )

    async def for_site(self, site_id: int) -> list[dict[str, Any]]:
        return [d async for d in self._sessions.find({"site_id": site_id}).sort("_id")]

    async def running(self, site_id: int) -> list[Session]:
        """The site's sessions not ended nor given up for dead, oldest first."""
        cursor = self._sessions.find({"site_id": site_id, "state": "RUNNING"}).sort("_id")
        return [Session.from_doc(d) async for d in cursor]
