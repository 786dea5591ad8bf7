"""Site repository: register, look up by id or name."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from balsam_mq.domain import Site
from balsam_mq.errors import BalsamError, NotFound
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import SITES


class SiteRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._sites = db[SITES]
        self._counters = Counters(db)

    async def create(self, site: Site) -> Site:
        """Register a new site; a name taken by the same owner is an error."""
        new = site.model_copy(update={"id": await self._counters.reserve(SITES)})
        try:
            await self._sites.insert_one(new.to_doc())
        except DuplicateKeyError:
            raise BalsamError(f"Site {site.name!r} already exists") from None
        return new

    async def get(self, site_id: int) -> Site:
        doc = await self._sites.find_one({"_id": site_id})
        if doc is None:
            raise NotFound(f"Site {site_id} does not exist")
        return Site.from_doc(doc)

    async def by_name(self, name: str) -> list[Site]:
        return [Site.from_doc(d) async for d in self._sites.find({"name": name})]

    async def all(self) -> list[Site]:
        return [Site.from_doc(d) async for d in self._sites.find().sort("_id")]
