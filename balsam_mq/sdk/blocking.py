"""The SDK without ``await``, for code that has no event loop (plain scripts, hook bodies).

Same names as the async SDK, same behaviour, plain calls::

    from balsam_mq.blocking import ApplicationDefinition, Job, connect

    class Adder(ApplicationDefinition):
        site = "polaris"

        def run(self, x, y):
            return x + y

    job = Adder.submit("test/5plus5", x=5, y=5)
    assert job.result(timeout=60) == 10
    for job in Job.objects.filter(state="FAILED"):
        job.state = "RESTART_READY"
        job.save()

    with connect(db="science") as client:   # optional: an explicit client for a block
        Job.objects.filter(tags={"run": "H2O"}).update(state="RESTART_READY")

Every call runs the async SDK on one background event loop (an anyio blocking
portal in a daemon thread, started on first use and stopped at interpreter exit).
Do not call it from that loop itself; async code should ``await`` the async SDK.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection
from typing import Any, ClassVar, TypeVar, cast

from balsam_mq.domain import ParkedMessage, SiteRemoval
from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.sdk import dead, futures, persist, refs, resources
from balsam_mq.sdk.app import ApplicationDefinitionBase, load_classes
from balsam_mq.sdk.blocking_queries import BlockingJobManager, BlockingManager, BlockingQuery
from balsam_mq.sdk.capture import capturing
from balsam_mq.sdk.client import (
    get_client,
)
from balsam_mq.sdk.managers import (
    AppManager,
    BatchJobManager,
    EventLogManager,
    JobManager,
    SiteManager,
    TransferItemManager,
)
from balsam_mq.sdk.portal import call, connect
from balsam_mq.sdk.view import JobView

T = TypeVar("T")
J = TypeVar("J", bound=JobView)

__all__ = [
    "App",
    "ApplicationDefinition",
    "BatchJob",
    "DeadLetters",
    "EventLog",
    "Job",
    "Site",
    "TransferItem",
    "connect",
]


class Job(JobView):
    """:class:`balsam_mq.Job` with plain calls: ``job.save()``, ``job.result(timeout=60)``."""

    objects: ClassVar[BlockingJobManager[Job]]

    __slots__ = ()

    def save(self) -> None:
        """Create the job, or write the fields changed since it was loaded."""
        captured = capturing()
        if captured is not None and self.id is None:
            captured.record(self)
            return
        call(persist.save_view, self)

    def delete(self) -> None:
        """Delete the job; a RUNNING job is killed first."""
        call(persist.delete_view, self)

    def kill(self) -> bool:
        """Stop the job wherever it is (see the async one); whether it was moved."""
        return call(persist.kill_view, self)

    def reset(self, *, descendants: bool = False) -> bool:
        """Run a FAILED or JOB_FINISHED job again from READY; whether it was moved."""
        return call(persist.reset_view, self, descendants)

    def refresh(self) -> None:
        """Reload every field from the store (local unsaved changes are dropped)."""
        call(persist.refresh_views, [self])

    def refresh_from_db(self) -> None:
        """Balsam's name for :meth:`refresh`."""
        self.refresh()

    def done(self) -> bool:
        """Whether the job reached JOB_FINISHED or FAILED (refreshes the job)."""
        self.refresh()
        return self.state in TERMINAL_STATES

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is finished; ``run()``'s return value, or its exception."""
        call(futures.wait_one, self, timeout)
        return self.result_nowait()

    def parent_query(self) -> BlockingQuery[Job]:
        """The query of this job's parents."""
        return type(self).objects.filter(id=list(self.parent_ids))


Job.objects = BlockingJobManager(JobManager(Job))


class Site(resources.SiteBase):
    objects: ClassVar[BlockingManager[Site]]

    def delete(self, *, force: bool = False, dry_run: bool = False) -> SiteRemoval:
        """Remove the site with its apps, batch jobs and work queues (see the async one)."""
        return call(resources.delete_site, self, force=force, dry_run=dry_run)


class App(resources.AppBase):
    """A stored app (``ApplicationDefinition.objects`` lists them too)."""

    objects: ClassVar[BlockingManager[App]]


class BatchJob(resources.BatchJobBase):
    objects: ClassVar[BlockingManager[BatchJob]]

    def save(self) -> None:
        call(resources.save_batch_job, self)

    def refresh(self) -> None:
        call(resources.refresh_batch_job, self)


class EventLog(resources.EventLogBase):
    objects: ClassVar[BlockingManager[EventLog]]


class TransferItem(resources.TransferItemBase):
    objects: ClassVar[BlockingManager[TransferItem]]


class DeadLetters:
    """:class:`balsam_mq.sdk.DeadLetters` without ``await``::

    for message in DeadLetters.list(site="polaris"):
        print(message.message_id, message.queue, message.job_ids, message.summary)
    """

    @staticmethod
    def list(limit: int | None = None, *, site: Any = None) -> builtins.list[ParkedMessage]:
        return call(dead.DeadLetters.list, limit, site=site)

    @staticmethod
    def get(message_id: str) -> ParkedMessage:
        return call(dead.DeadLetters.get, message_id)

    @staticmethod
    def retry(message_ids: Collection[str] | None = None) -> builtins.list[ParkedMessage]:
        return call(dead.DeadLetters.retry, message_ids)

    @staticmethod
    def purge(message_ids: Collection[str] | None = None) -> builtins.list[ParkedMessage]:
        return call(dead.DeadLetters.purge, message_ids)


Site.objects = BlockingManager(SiteManager(Site))
App.objects = BlockingManager(AppManager(App))
BatchJob.objects = BlockingManager(BatchJobManager(BatchJob))
EventLog.objects = BlockingManager(EventLogManager(EventLog))
TransferItem.objects = BlockingManager(TransferItemManager(TransferItem))


class ApplicationDefinition(ApplicationDefinitionBase):
    """:class:`balsam_mq.ApplicationDefinition` with plain ``sync()``, ``submit()`` and
    ``load_by_site()``; its jobs are blocking :class:`Job` objects."""

    objects: ClassVar[BlockingManager[App]] = App.objects
    _job_class: ClassVar[type[Job]] = Job

    @classmethod
    def sync(cls) -> None:
        """Store this class at its site, overwriting an earlier version of the same name."""
        call(_sync, cls)

    @classmethod
    def submit(cls, workdir: str, *, save: bool = True, **kwargs: Any) -> Job:
        """Sync (once per client) and create a job; ``save=False`` returns it unsaved."""
        job, captured = cls._new_job(workdir, save=save, **kwargs)
        if save and not captured:
            job.save()
        return cast(Job, job)

    @classmethod
    def load_by_site(cls, site: Any) -> dict[str, Any]:
        """``{name: app}`` of every app synced at ``site``: classes defined with this SDK as
        they are, the others each behind a :class:`BlockingApp` with the same calls."""
        loaded = call(load_classes, site)
        return {
            name: app if issubclass(app, ApplicationDefinition) else BlockingApp(app)
            for name, app in loaded.items()
        }


async def _sync(cls: type) -> None:
    await refs.sync_class(await get_client(), cls)


class BlockingApp:
    """A stored app class defined with the async SDK, used with plain calls:
    ``apps["Adder"].submit("w/1", x=1, y=2)`` submits a job of that very class."""

    def __init__(self, cls: type[ApplicationDefinitionBase]) -> None:
        self.cls = cls
        self.__name__ = cls.__name__

    def __repr__(self) -> str:
        return f"<blocking app {self.cls.__name__}>"

    @property
    def objects(self) -> BlockingManager[App]:
        return App.objects

    def sync(self) -> None:
        call(_sync, self.cls)

    def submit(self, workdir: str, *, save: bool = True, **kwargs: Any) -> Job:
        job, captured = self.cls._new_job(workdir, save=save, job_class=Job, **kwargs)
        if save and not captured:
            job.save()
        return cast(Job, job)
