"""Site repository: register, look up by id or name, and remove a site with what it owns."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from balsam_mq.domain import BatchJob, BatchJobState, Site, SiteRemoval
from balsam_mq.errors import BalsamError, InUse, NotFound
from balsam_mq.store.counters import Counters
from balsam_mq.store.schema import APPS, BATCH_JOBS, JOBS, SESSIONS, SITES
from balsam_mq.store.transactions import Transactor

# batch jobs still known to a scheduler: removing their site orphans the allocation
_ACTIVE = [
    BatchJobState.PENDING_SUBMISSION.value,
    BatchJobState.QUEUED.value,
    BatchJobState.RUNNING.value,
    BatchJobState.PENDING_DELETION.value,
]


class SiteRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], tx: Transactor) -> None:
        self._db = db
        self._sites = db[SITES]
        self._counters = Counters(db)
        self._tx = tx

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

    async def remove(self, site_id: int, *, force: bool, dry_run: bool = False) -> SiteRemoval:
        """Delete the site, its apps, batch jobs and launcher sessions in one transaction.

        A site that still has jobs or active batch jobs is refused with :class:`InUse`
        unless ``force``, which deletes its jobs too. The event log is kept. With
        ``dry_run`` nothing is written: the answer says what would be deleted.
        """

        async def body(s: AsyncClientSession) -> SiteRemoval:
            doc = await self._sites.find_one({"_id": site_id}, session=s)
            if doc is None:
                raise NotFound(f"Site {site_id} does not exist")
            site = Site.from_doc(doc)
            match = {"site_id": site_id}
            removal = SiteRemoval(
                site=site,
                jobs=await self._db[JOBS].count_documents(match, session=s),
                apps=await self._db[APPS].count_documents(match, session=s),
                batch_jobs=await self._db[BATCH_JOBS].count_documents(match, session=s),
                active_batch_jobs=[
                    BatchJob.from_doc(d)
                    async for d in self._db[BATCH_JOBS].find(
                        {**match, "state": {"$in": _ACTIVE}}, session=s
                    )
                ],
            )
            if not force and removal.in_use:
                raise InUse(removal.refusal())
            if dry_run:
                return removal
            for name in (JOBS, APPS, BATCH_JOBS, SESSIONS):
                await self._db[name].delete_many(match, session=s)
            await self._sites.delete_one({"_id": site_id}, session=s)
            return removal

        return await self._tx.run(body)


def _label(site: Site) -> str:
    return f"Site {site.name!r} (id {site.id})"
