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

import atexit
import builtins
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from balsam_mq.domain import ParkedMessage, SiteRemoval
from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.sdk import dead, futures, persist, refs, resources
from balsam_mq.sdk.app import ApplicationDefinitionBase, load_classes
from balsam_mq.sdk.capture import capturing
from balsam_mq.sdk.client import (
    Client,
    close_default_client,
    current_client,
    get_client,
    make_current,
    open_client,
    reset_current,
    use_client,
)
from balsam_mq.sdk.managers import (
    AppManager,
    BatchJobManager,
    EventLogManager,
    JobManager,
    Manager,
    SiteManager,
    TransferItemManager,
)
from balsam_mq.sdk.progress import ShowProgress, check_progress
from balsam_mq.sdk.query import Query
from balsam_mq.sdk.steer import Steered
from balsam_mq.sdk.view import JobView
from balsam_mq.settings import Settings, load_settings

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

_lock = threading.Lock()
_portal: tuple[BlockingPortal, AbstractContextManager[BlockingPortal]] | None = None


def portal() -> BlockingPortal:
    """The background event loop's portal, started on first use."""
    global _portal
    with _lock:
        if _portal is None:
            manager = start_blocking_portal("asyncio")
            _portal = (manager.__enter__(), manager)
            atexit.register(_stop)
        return _portal[0]


def _stop() -> None:
    global _portal
    with _lock:
        if _portal is None:
            return
        running, manager = _portal
        _portal = None
    try:
        running.call(close_default_client)
    finally:
        manager.__exit__(None, None, None)


def call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await fn(*args, **kwargs)`` on the background loop with this thread's client."""
    client = current_client()

    async def run() -> T:
        async with use_client(client):
            return await fn(*args, **kwargs)

    return portal().call(run)


@contextmanager
def connect(settings: Settings | None = None, **overrides: Any) -> Iterator[Client]:
    """Open a client and make it current in this thread inside the block."""
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        settings = load_settings(**{**settings.model_dump(), **overrides})
    with portal().wrap_async_context_manager(open_client(settings)) as client:
        token = make_current(client)
        try:
            yield client
        finally:
            reset_current(token)


class BlockingQuery(Generic[T]):
    """:class:`~balsam_mq.sdk.query.Query` with plain calls; ``for x in query`` and
    ``query[0]`` fetch (as in Balsam), ``len()`` and ``bool()`` are refused."""

    def __init__(self, query: Query[T]) -> None:
        self.query = query

    def __repr__(self) -> str:
        return repr(self.query)

    def __len__(self) -> int:
        raise TypeError("len() of a query would do I/O: use query.count()")

    def __bool__(self) -> bool:
        raise TypeError("a query has no truth value: use query.exists()")

    def all(self) -> BlockingQuery[T]:
        return self

    def filter(self, **filters: Any) -> BlockingQuery[T]:
        return BlockingQuery(self.query.filter(**filters))

    def order_by(self, *fields: str) -> BlockingQuery[T]:
        return BlockingQuery(self.query.order_by(*fields))

    @overload
    def __getitem__(self, window: slice) -> BlockingQuery[T]: ...

    @overload
    def __getitem__(self, window: int) -> T: ...

    def __getitem__(self, window: slice | int) -> BlockingQuery[T] | T:
        """``query[10:20]`` narrows the query; ``query[0]`` fetches the first match."""
        if isinstance(window, slice):
            return BlockingQuery(self.query[window])
        query, index = self.query, window

        async def item() -> T:
            return await query[index]

        return call(item)

    def __iter__(self) -> Iterator[T]:
        return iter(self.fetch())

    def fetch(self) -> list[T]:
        return call(self.query.fetch)

    def count(self) -> int:
        return call(self.query.count)

    def exists(self) -> bool:
        return call(self.query.exists)

    def first(self) -> T | None:
        return call(self.query.first)

    def get(self, **filters: Any) -> T:
        return call(self.query.get, **filters)

    def update(self, **fields: Any) -> int:
        return call(self.query.update, **fields)

    def delete(self) -> int:
        return call(self.query.delete)

    def kill(self) -> Steered:
        """Jobs only: stop every match that has not finished (see the async one)."""
        return call(self.query.kill)

    def reset(self, *, descendants: bool = False) -> Steered:
        """Jobs only: run every FAILED or JOB_FINISHED match again (see the async one)."""
        return call(self.query.reset, descendants=descendants)


class BlockingManager(Generic[T]):
    """A manager with plain calls, wrapping the async one."""

    def __init__(self, manager: Manager[T]) -> None:
        self.manager = manager

    def __repr__(self) -> str:
        return f"<blocking {self.manager!r}>"

    def all(self) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.all())

    def filter(self, **filters: Any) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.filter(**filters))

    def order_by(self, *fields: str) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.order_by(*fields))

    def get(self, **filters: Any) -> T:
        return call(self.manager.get, **filters)

    def first(self) -> T | None:
        return call(self.manager.first)

    def count(self) -> int:
        return call(self.manager.count)

    def create(self, *args: Any, **fields: Any) -> T:
        create = cast(Callable[..., Awaitable[T]], getattr(self.manager, "create"))  # noqa: B009
        return call(create, *args, **fields)

    def lookup(self, *args: Any, **kwargs: Any) -> Any:
        """``Site.objects.lookup(name)``, ``ApplicationDefinition.objects.lookup(name)``."""
        lookup = cast(Callable[..., Awaitable[Any]], getattr(self.manager, "lookup"))  # noqa: B009
        return call(lookup, *args, **kwargs)


class BlockingJobManager(BlockingManager[J]):
    manager: JobManager[J]

    def create(self, workdir: str, app_id: Any = None, **fields: Any) -> J:
        job = self.manager.model(workdir, app_id, **fields)
        captured = capturing()
        if captured is not None:
            captured.record(job)
            return job
        call(persist.create_views, [job])
        return job

    def bulk_create(self, jobs: Iterable[J]) -> list[J]:
        jobs = list(jobs)
        captured = capturing()
        if captured is not None:
            for job in jobs:
                captured.record(job)
            return jobs
        call(persist.create_views, list(jobs))
        return jobs

    def refresh(self, jobs: Sequence[J]) -> None:
        call(persist.refresh_views, jobs)

    def bulk_update(self, jobs: Iterable[J]) -> None:
        call(self.manager.bulk_update, jobs)

    def wait(
        self,
        jobs: Sequence[J],
        return_when: futures.ReturnWhen = "ALL_COMPLETED",
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> futures.DoneAndNotDone[J]:
        return call(self.manager.wait, jobs, return_when, timeout, poll_interval)

    def as_completed(
        self,
        jobs: Sequence[J],
        timeout: float | None = None,
        *,
        progress: ShowProgress = False,
    ) -> Iterator[J]:
        """``for job in Job.objects.as_completed(jobs, timeout=60, progress=True)``."""
        client = current_client()
        steps = futures.as_completed(list(jobs), timeout, progress=check_progress(progress))
        done = object()

        async def step() -> Any:
            async with use_client(client):
                try:
                    return await steps.__anext__()
                except StopAsyncIteration:
                    return done

        try:
            while (item := portal().call(step)) is not done:
                yield cast(J, item)
        finally:
            portal().call(steps.aclose)


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
