"""App repository: the sync upsert (document and ``synced`` event in one transaction) and reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import App, Event, utcnow
from balsam_mq.errors import NotFound
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import APPS, EVENTS
from balsam_mq.store.transactions import Transactor

SYNCED = "synced"


class AppRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], tx: Transactor) -> None:
        self._apps = db[APPS]
        self._events = db[EVENTS]
        self._counters = Counters(db)
        self._tx = tx

    async def upsert(self, app: App, *, session: AsyncClientSession | None = None) -> App:
        """Store ``app``, unique by (site_id, name): a re-sync overwrites and keeps the id.

        The document and an ``app.<site>.synced`` event are written in one transaction,
        so running site agents and launchers hear about every version.
        """
        key = {"site_id": app.site_id, "name": app.name}
        existing = await self._apps.find_one(key, {"_id": 1})
        new_id = existing["_id"] if existing else await self._counters.reserve(APPS)
        fields = app.to_doc()
        fields.pop("_id", None)
        fields["last_update"] = utcnow()

        async def body(s: AsyncClientSession) -> App:
            doc = await self._apps.find_one_and_update(
                key,
                {"$set": fields, "$setOnInsert": {"_id": new_id}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            assert doc is not None
            event = Event(
                kind="app",
                site_id=app.site_id,
                app_id=doc["_id"],
                to_state=SYNCED,
                timestamp=fields["last_update"],
            )
            await self._events.insert_one(event.to_doc(), session=s)
            stored: App = App.from_doc(doc)
            return stored

        return await self._tx.run(body, session=session)

    async def get(self, app_id: int) -> App:
        doc = await self._apps.find_one({"_id": app_id})
        if doc is None:
            raise NotFound(f"App {app_id} does not exist")
        app: App = App.from_doc(doc)
        return app

    async def get_many(self, app_ids: Iterable[int]) -> list[App]:
        cursor = self._apps.find({"_id": {"$in": sorted(set(app_ids))}})
        return [App.from_doc(d) async for d in cursor]

    async def by_name(self, name: str, *, site_id: int | None = None) -> list[App]:
        """Apps called ``name`` (at ``site_id`` if given), oldest first."""
        match: dict[str, Any] = {"name": name}
        if site_id is not None:
            match["site_id"] = site_id
        return [App.from_doc(d) async for d in self._apps.find(match).sort("_id")]

    async def for_site(self, site_id: int) -> list[App]:
        return [App.from_doc(d) async for d in self._apps.find({"site_id": site_id}).sort("_id")]
