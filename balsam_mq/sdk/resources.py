"""Sites, stored apps, batch jobs and the event log as the SDK returns them (with ``objects``)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, GetCoreSchemaHandler, PrivateAttr
from pydantic_core import CoreSchema, core_schema

from balsam_mq.domain import (
    App as AppDocument,
    BatchJob as BatchJobDocument,
    Event,
    Site as SiteDocument,
    SiteRemoval,
    TransferItem as TransferItemDocument,
)
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.errors import MultipleResults, NotFound
from balsam_mq.sdk.client import get_client
from balsam_mq.sdk.managers import (
    AppManager,
    BatchJobManager,
    EventLogManager,
    SiteManager,
    TransferItemManager,
)


class _Stored(BaseModel):
    """``_from_document`` for pydantic documents: the same fields, as the SDK class."""

    @classmethod
    def _from_document(cls, document: BaseModel) -> Any:
        return cls.model_validate(document.model_dump())


class SitePath(str):
    """A site's directory as stored (text) that joins like a :class:`~pathlib.Path`:
    ``site.path / "data" / job.workdir`` is a ``Path``, as in Balsam."""

    __slots__ = ()

    def __truediv__(self, other: str | PathLike[str]) -> Path:
        return Path(self) / other

    def __fspath__(self) -> str:
        return str.__str__(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(cls, handler(str))


class SiteBase(_Stored, SiteDocument):
    """A site, as both SDKs give it (the async and the blocking ``Site`` add I/O)."""

    path: SitePath = SitePath()

    class DoesNotExist(NotFound):
        """``Site.objects.get(...)`` matched no site."""

    class MultipleObjectsReturned(MultipleResults):
        """``Site.objects.get(...)`` matched more than one site."""


class Site(SiteBase):
    """A site (where apps run). ``await Site.objects.get(name="polaris")``"""

    objects: ClassVar[SiteManager[Site]]

    async def delete(self, *, force: bool = False, dry_run: bool = False) -> SiteRemoval:
        """Remove the site with its apps, batch jobs and work queues; the event log stays.

        A site that still has jobs or active batch jobs is refused (:class:`InUse`)
        unless ``force``, which deletes its jobs too. Allocations already in a
        scheduler are not cancelled (the answer lists them). ``dry_run`` only tells
        what would be removed, refusing the same way.

        Example::

            removal = await (await Site.objects.lookup("laptop")).delete(force=True)
            print(removal.jobs, "jobs deleted")
        """
        return await delete_site(self, force=force, dry_run=dry_run)


async def delete_site(site: SiteBase, *, force: bool, dry_run: bool) -> SiteRemoval:
    if site.id is None:
        raise NotFound(f"Site {site.name!r} is not saved")
    client = await get_client()
    return await client.backend.delete_site(site.id, force=force, dry_run=dry_run)


class AppBase(_Stored, AppDocument):
    class DoesNotExist(NotFound):
        """``App.objects.get(...)`` matched no app."""

    class MultipleObjectsReturned(MultipleResults):
        """``App.objects.get(...)`` matched more than one app."""


class App(AppBase):
    """An app as stored by ``sync()`` (its class is ``ApplicationDefinition.load_by_site``)."""

    objects: ClassVar[AppManager[App]]


class BatchJobBase(_Stored, BatchJobDocument):
    _saved: dict[str, Any] | None = PrivateAttr(default=None)

    class DoesNotExist(NotFound):
        """``BatchJob.objects.get(...)`` matched no batch job."""

    class MultipleObjectsReturned(MultipleResults):
        """``BatchJob.objects.get(...)`` matched more than one batch job."""

    @classmethod
    def _from_document(cls, document: Any) -> Any:
        item = super()._from_document(document)
        item._saved = item.model_dump()
        return item


class BatchJob(BatchJobBase):
    """A pilot allocation request. ``await BatchJob.objects.filter(site=site).count()``"""

    objects: ClassVar[BatchJobManager[BatchJob]]

    async def save(self) -> None:
        """Create it, or write the fields changed since it was loaded (a changed ``state``
        writes an event)."""
        await save_batch_job(self)

    async def refresh(self) -> None:
        await refresh_batch_job(self)


async def save_batch_job(item: BatchJobBase) -> None:
    client = await get_client()
    if item.id is None:
        stored = await client.backend.create_batch_job(item)
        item.id = stored.id
        item.created_at = stored.created_at
        item._saved = item.model_dump()
        return
    current = item.model_dump()
    changed = {k: v for k, v in current.items() if item._saved is None or item._saved[k] != v}
    if not changed:
        return
    spec = QuerySpec("batch_jobs", (Condition("id", "eq", item.id),))
    if not await BatchJobManager(type(item)).update_matching(client, spec, changed):
        raise NotFound(f"BatchJob {item.id} does not exist")
    await refresh_batch_job(item)


async def refresh_batch_job(item: BatchJobBase) -> None:
    fresh = await BatchJobManager(type(item)).get(id=item.id)
    for name in type(item).model_fields:
        setattr(item, name, getattr(fresh, name))
    item._saved = item.model_dump()


class EventLogBase(_Stored, Event):
    """One state change of a job (or app, batch job). ``EventLog.objects.filter(job_id=42)``"""

    class DoesNotExist(NotFound):
        """``EventLog.objects.get(...)`` matched no event."""

    class MultipleObjectsReturned(MultipleResults):
        """``EventLog.objects.get(...)`` matched more than one event."""

    @property
    def data(self) -> dict[str, Any]:
        """Balsam's name for the event's ``state_data``."""
        return self.state_data


class EventLog(EventLogBase):
    """One state change of a job (or app, batch job). ``EventLog.objects.filter(job_id=42)``"""

    objects: ClassVar[EventLogManager[EventLog]]


class TransferItemBase(_Stored, TransferItemDocument):
    """One transfer slot of one job, in one direction: its state, the batch it moved in
    (``task_id``), bytes, timing and error. ``TransferItem.objects.filter(job_id=42)``"""

    class DoesNotExist(NotFound):
        """``TransferItem.objects.get(...)`` matched no transfer item."""

    class MultipleObjectsReturned(MultipleResults):
        """``TransferItem.objects.get(...)`` matched more than one transfer item."""


class TransferItem(TransferItemBase):
    """One transfer slot of one job, in one direction: its state, the batch it moved in
    (``task_id``), bytes, timing and error. ``TransferItem.objects.filter(job_id=42)``"""

    objects: ClassVar[TransferItemManager[TransferItem]]


Site.objects = SiteManager(Site)
App.objects = AppManager(App)
BatchJob.objects = BatchJobManager(BatchJob)
EventLog.objects = EventLogManager(EventLog)
TransferItem.objects = TransferItemManager(TransferItem)
